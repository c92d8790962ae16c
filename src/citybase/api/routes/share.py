"""Sharing: the catalog, access requests and grants, scoped reads, aggregates, usage and figures.

A thin shell over `Sharing` (citybase.share): each route reads its parameters, calls one method
with the caller's principal, and renders the answer. Rows come back as JSON (default), GeoJSON
(`Accept: application/geo+json`) or Arrow IPC (`Accept: application/vnd.apache.arrow.stream`).
"""

from __future__ import annotations

import base64
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from citybase.api.auth import Caller
from citybase.query.ranges import parse_bbox
from citybase.share import (
    AccessRequest,
    AggregateQuery,
    CatalogEntry,
    CatalogMeta,
    Decision,
    PlatformStats,
    RowFilter,
    SearchResult,
    Sharing,
    UsageRow,
)
from citybase.share.budget import BudgetState
from citybase.share.search import parse_fq

router = APIRouter(prefix="/api/v1", tags=["sharing"])

ARROW = "application/vnd.apache.arrow.stream"
GEOJSON = "application/geo+json"
MAX_LIMIT = 100_000

Start = Annotated[datetime | None, Query(description="Start of the time window (ISO 8601, inclusive).")]
End = Annotated[datetime | None, Query(description="End of the time window (exclusive).")]
Tz = Annotated[
    str | None,
    Query(description="Time buckets by this IANA time zone's clock, labelled in it (default UTC)."),
]


def sharing(request: Request) -> Sharing:
    """The app's `Sharing`: `app.state.share` if set (tests set their own), else the platform's
    `cb.share`, else (a platform without the share box wired) one made for this app."""
    state = request.app.state
    s = getattr(state, "share", None)
    if s is None:
        s = getattr(state.cb, "share", None) or Sharing(state.cb)
        state.share = s
    assert isinstance(s, Sharing)
    return s


# -- rendering ------------------------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN or infinity
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool) and v >= 2**53:
        return f"{v:x}"  # an H3 id: hex, as H3 writes it, not a float that loses bits
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _geojson(t: pa.Table) -> dict[str, Any]:
    import shapely

    names = t.column_names
    features = []
    for row in t.to_pylist():
        geom: Any = None
        if row.get("geom") is not None:
            geom = shapely.geometry.mapping(shapely.from_wkb(row["geom"]))
        elif _jsonable(row.get("lon")) is not None and _jsonable(row.get("lat")) is not None:
            geom = {"type": "Point", "coordinates": [row["lon"], row["lat"]]}
        props = {k: _jsonable(v) for k, v in row.items() if k not in ("geom", "lon", "lat")}
        features.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features, "numberReturned": t.num_rows, "columns": names}


def render(request: Request, t: pa.Table) -> Response:
    """An Arrow table in the format the Accept header asks for."""
    accept = request.headers.get("accept", "application/json")
    if ARROW in accept:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW)
    if GEOJSON in accept:
        return JSONResponse(_geojson(t), media_type=GEOJSON)
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in t.to_pylist()]
    return JSONResponse({"columns": t.column_names, "rows": rows, "numberReturned": t.num_rows})


# -- catalog --------------------------------------------------------------------------------------


@router.get("/catalog", response_model=SearchResult, summary="Search the data resource catalog")
def catalog_search(
    request: Request,
    _: Caller,
    q: Annotated[str | None, Query(description="Free text; every term must occur.")] = None,
    fq: Annotated[
        str | None, Query(description="CKAN-style filters: `sharing:conditional provider:hrss`.")
    ] = None,
    provider: Annotated[list[str] | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    sharing_: Annotated[list[str] | None, Query(alias="sharing")] = None,
    open_: Annotated[list[str] | None, Query(alias="open")] = None,
    keyword: Annotated[list[str] | None, Query()] = None,
    facet: Annotated[list[str] | None, Query(description="Facet fields (default: all).")] = None,
    rows: Annotated[int, Query(ge=0, le=1000)] = 20,
    start: Annotated[int, Query(ge=0)] = 0,
    sort: str | None = None,
) -> SearchResult:
    filters = parse_fq(fq)
    for name, values in (
        ("provider", provider),
        ("kind", kind),
        ("sharing", sharing_),
        ("open", open_),
        ("keyword", keyword),
    ):
        if values:
            filters.setdefault(name, []).extend(values)
    return sharing(request).search(q, filters, facets=facet, rows=rows, start=start, sort=sort)


@router.get("/catalog.jsonld", summary="The catalog as DCAT 3 JSON-LD")
def catalog_dcat(request: Request, _: Caller) -> JSONResponse:
    doc = sharing(request).dcat(str(request.base_url))
    return JSONResponse(doc, media_type="application/ld+json")


@router.get("/catalog/{dataset}", response_model=CatalogEntry, summary="One catalog entry")
def catalog_entry(request: Request, dataset: str, _: Caller) -> CatalogEntry:
    return sharing(request).entry(dataset)


@router.put("/catalog/{dataset}", response_model=CatalogEntry, summary="Describe a dataset (its provider)")
def catalog_describe(request: Request, dataset: str, body: CatalogMeta, who: Caller) -> CatalogEntry:
    return sharing(request).describe(who, dataset, body)


# -- requests and grants --------------------------------------------------------------------------


class RequestIn(BaseModel):
    dataset: str
    purpose: str = Field(min_length=1)
    fields: list[str] | None = None
    row_filter: RowFilter | None = None
    days: int = Field(default=90, ge=1, le=3650)


class RevokeIn(BaseModel):
    reason: str = ""


@router.post("/access/requests", response_model=AccessRequest, status_code=201, summary="Ask for a dataset")
def access_request(request: Request, body: RequestIn, who: Caller) -> AccessRequest:
    return sharing(request).request(
        who,
        body.dataset,
        purpose=body.purpose,
        fields=body.fields,
        row_filter=body.row_filter,
        days=body.days,
    )


@router.get("/access/requests", response_model=list[AccessRequest], summary="Requests made or to answer")
def access_requests(
    request: Request, who: Caller, box: Literal["mine", "incoming", "all"] = "mine"
) -> list[AccessRequest]:
    return sharing(request).requests(who, box)


@router.post(
    "/access/requests/{request_id}/decision", response_model=AccessRequest, summary="Answer a request"
)
def access_decide(request: Request, request_id: str, body: Decision, who: Caller) -> AccessRequest:
    return sharing(request).decide(who, request_id, body)


@router.post("/access/requests/{request_id}/revoke", response_model=AccessRequest, summary="Revoke a grant")
def access_revoke(request: Request, request_id: str, body: RevokeIn, who: Caller) -> AccessRequest:
    return sharing(request).revoke(who, request_id, body.reason)


@router.get("/access/grants", response_model=list[AccessRequest], summary="Live grants held or given")
def access_grants(request: Request, who: Caller) -> list[AccessRequest]:
    return sharing(request).grants_of(who)


@router.get("/access/budget/{dataset}", response_model=BudgetState, summary="Differential-privacy budget")
def access_budget(request: Request, dataset: str, who: Caller) -> BudgetState:
    return sharing(request).budget(who, dataset)


# -- scoped reads ---------------------------------------------------------------------------------


@router.get("/data/{dataset}/bbox", summary="Rows in a box (and time window), through the caller's grant")
def data_bbox(
    request: Request,
    dataset: str,
    who: Caller,
    bbox: Annotated[str, Query(description="xmin,ymin,xmax,ymax (lon/lat)")],
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
) -> Response:
    t = sharing(request).read(who, dataset, "range", area=parse_bbox(bbox), start=start, end=end, limit=limit)
    return render(request, t)


@router.get("/data/{dataset}/track", summary="One object's rows in time order, through the caller's grant")
def data_track(
    request: Request,
    dataset: str,
    who: Caller,
    object_id: Annotated[str, Query(alias="object")],
    start: Start = None,
    end: End = None,
) -> Response:
    t = sharing(request).read(who, dataset, "track", object_id=object_id, start=start, end=end)
    return render(request, t)


@router.get("/data/{dataset}/counts", summary="Rows per area (and time bucket), through the caller's grant")
def data_counts(
    request: Request,
    dataset: str,
    who: Caller,
    level: str = "district",
    every: str | None = None,
    tz: Tz = None,
    start: Start = None,
    end: End = None,
) -> Response:
    t = sharing(request).read(who, dataset, "counts", level=level, start=start, end=end, every=every, tz=tz)
    return render(request, t)


@router.get("/data/{dataset}/h3", summary="Rows per H3 cell (and time bucket), through the caller's grant")
def data_h3(
    request: Request,
    dataset: str,
    who: Caller,
    resolution: Annotated[int, Query(ge=0, le=15)] = 8,
    every: str | None = None,
    tz: Tz = None,
    start: Start = None,
    end: End = None,
) -> Response:
    t = sharing(request).read(
        who, dataset, "h3_bins", resolution=resolution, start=start, end=end, every=every, tz=tz
    )
    return render(request, t)


class SqlIn(BaseModel):
    query: str = Field(description="One SELECT over city.<dataset> views (and city.place_<level>).")
    purpose: str = ""


@router.post("/data/sql", summary="SQL over the datasets the caller may read, each through its grant")
def data_sql(request: Request, body: SqlIn, who: Caller) -> Response:
    return render(request, sharing(request).sql(who, body.query, body.purpose))


# -- aggregates -----------------------------------------------------------------------------------


class AggregateOut(BaseModel):
    dataset: str
    mode: str
    k: int
    epsilon: float
    epsilon_left: float | None
    cells: list[dict[str, Any]]


@router.get("/aggregates/{dataset}", response_model=AggregateOut, summary="Privacy-preserving aggregates")
def aggregates(
    request: Request,
    dataset: str,
    who: Caller,
    level: str = "district",
    every: str | None = "1d",
    start: Start = None,
    end: End = None,
    measure: Literal["count", "contributors", "sum", "mean"] = "count",
    field: str | None = None,
    mode: Literal["exact", "dp"] = "exact",
    epsilon: Annotated[float, Query(gt=0, le=10)] = 0.1,
    low: float | None = None,
    high: float | None = None,
    purpose: str = "",
) -> AggregateOut:
    bounds = (low, high) if low is not None and high is not None else None
    aq = AggregateQuery(
        level=level,
        every=every or None,
        start=start,
        end=end,
        measure=measure,
        field=field,
        mode=mode,
        epsilon=epsilon,
        bounds=bounds,
    )
    res = sharing(request).aggregate(who, dataset, aq, purpose)
    cells = [{k: _jsonable(v) for k, v in r.items()} for r in res.table.to_pylist()]
    return AggregateOut(
        dataset=dataset,
        mode=res.mode,
        k=res.k,
        epsilon=res.epsilon,
        epsilon_left=res.epsilon_left,
        cells=cells,
    )


# -- usage and figures ----------------------------------------------------------------------------


@router.get("/usage", response_model=list[UsageRow], summary="Uses of data resources, summarised")
def usage(
    request: Request,
    who: Caller,
    by: Annotated[list[str] | None, Query(description="day, consumer, dataset, kind, purpose")] = None,
    start: date | None = None,
    end: date | None = None,
) -> list[UsageRow]:
    return sharing(request).usage_summary(who, by or ["dataset"], start=start, end=end)


@router.get("/stats", response_model=PlatformStats, summary="The platform's figures")
def stats(request: Request, _: Caller, days: Annotated[int, Query(ge=1, le=366)] = 30) -> PlatformStats:
    return sharing(request).stats(days)
