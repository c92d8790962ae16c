"""The console over HTTP: its pages and assets under /console/, its map layers under /api/v1/map/.

Pages and assets are public (they hold no data); every data endpoint needs a key, and reads
through the caller's grants (access.py). The page keeps the key in sessionStorage and sends it as
`Authorization: Bearer` on every request, the map's tile requests included.

The router's lifespan starts the map's index (index.py) when the server starts, so the first map
view after a start finds it built, or being built, rather than starting its build.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from citybase.api.auth import Caller
from citybase.console import assets, layers, tiles
from citybase.console.access import Viewer
from citybase.console.figures import Figures, FigureSource
from citybase.console.geo import jsonable, parse_bbox
from citybase.console.index import State, map_index
from citybase.console.place import place_report
from citybase.errors import Forbidden, InputError, NotFound
from citybase.model.dataset import Kind
from citybase.query._sql import parse_time
from citybase.query.scope import ReadScope


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Build (or map from disk) the map's index in the background from the server's start."""
    index = map_index(app.state)
    index.start()
    try:
        yield
    finally:
        index.stop()


router = APIRouter(tags=["console"], lifespan=_lifespan)
GEOJSON = "application/geo+json"
MVT = "application/vnd.mapbox-vector-tile"

Start = Annotated[datetime | None, Query(description="Start of the time window (ISO 8601, inclusive).")]
End = Annotated[datetime | None, Query(description="End of the time window (exclusive).")]
BBox = Annotated[str | None, Query(description="xmin,ymin,xmax,ymax (lon/lat)")]
Zoom = Annotated[float, Query(ge=0, le=24, description="Map zoom: shapes are simplified for it.")]


# -- pages and assets (public) --------------------------------------------------------------------


@router.get("/console", include_in_schema=False)
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console/", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(assets.static_file("index.html"), headers={"Cache-Control": "no-cache"})


@router.get("/console/static/{name}", include_in_schema=False)
def console_static(name: str) -> FileResponse:
    return FileResponse(assets.static_file(name), headers={"Cache-Control": "no-cache"})


@router.get("/console/vendor/{name}", include_in_schema=False)
def console_vendor(name: str) -> FileResponse:
    return FileResponse(assets.vendor_file(name), headers={"Cache-Control": "public, max-age=86400"})


# -- helpers --------------------------------------------------------------------------------------


def _geo(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, media_type=GEOJSON, headers={"Cache-Control": "private, max-age=2"})


def _scope(v: Viewer, dataset: str) -> ReadScope:
    scope = v.scope(dataset)
    if scope is None:
        raise Forbidden(v.why.get(dataset, f"dataset {dataset!r} is not visible to this key"))
    return scope


def _index(request: Request, scope: ReadScope, dataset: str) -> State | None:
    """The map's index of `dataset` (index.py), for an open scope only: scoped reads read the lake."""
    return map_index(request.app.state).get(dataset) if scope.is_open else None


def _city(request: Request) -> Any:
    city = request.app.state.cb.city
    if city is None:
        raise NotFound("the platform has no city model yet (citybase city ...)")
    return city


def _t(v: datetime | None, what: str) -> datetime | None:
    return parse_time(v, what)


def _at(v: datetime) -> datetime:
    t = parse_time(v, "at")
    if t is None:  # pragma: no cover - parse_time answers None only for None
        raise InputError("at is required")
    return t


# -- what the map can show ------------------------------------------------------------------------


class MapDataset(BaseModel):
    name: str
    title: str
    kind: str
    department: str
    layer: str | None  # heat, tracks, sensors, shapes or None
    visible: bool
    start: datetime | None = None
    end: datetime | None = None
    stations: str | None = None
    value_field: str | None = None


class MapConfig(BaseModel):
    city: str
    timezone: str
    bounds: list[float]
    levels: list[str]
    department: str
    admin: bool
    start: datetime | None
    end: datetime | None
    datasets: list[MapDataset]


def _layer_of(kind: Kind, timed: bool) -> str | None:
    if kind is Kind.points and timed:
        return "heat"
    if kind is Kind.tracks:
        return "tracks"
    if kind is Kind.series:
        return "sensors"
    if kind is Kind.areas:
        return "shapes"
    return None


@router.get("/api/v1/map/config", response_model=MapConfig, summary="What the console's map can show")
def map_config(request: Request, who: Caller) -> MapConfig:
    import shapely

    cb = request.app.state.cb
    city = _city(request)
    v = Viewer(request.app.state, who)
    index = map_index(request.app.state)
    bounds = [float(b) for b in shapely.total_bounds([g for lay in city.layers.values() for g in lay.geoms])]
    out, starts, ends = [], [], []
    for name, spec in sorted(cb.datasets.items()):
        layer = _layer_of(spec.kind, spec.time_field is not None)
        visible = v.scope(name) is not None
        d = MapDataset(
            name=name,
            title=spec.title,
            kind=spec.kind.value,
            department=spec.department,
            layer=layer,
            visible=visible,
        )
        if layer in ("heat", "tracks", "sensors") and visible:
            # The index's extent when it is built (not waiting for it), else the lake's.
            d.start, d.end = layers.time_extent(cb, name, index.get(name, wait=0))
            if d.start is not None and d.end is not None:
                starts.append(d.start)
                ends.append(d.end)
        if layer == "sensors":
            d.stations = layers.station_dataset(cb, spec)
            d.value_field = layers.value_field(spec)
        out.append(d)
    return MapConfig(
        city=city.name,
        timezone=city.timezone,
        bounds=bounds,
        levels=[lv.value for lv in city.layers],
        department=who.department,
        admin=who.is_admin,
        start=min(starts) if starts else None,
        end=max(ends) if ends else None,
        datasets=out,
    )


# -- layers ---------------------------------------------------------------------------------------


@router.get("/api/v1/map/areas/{level}", summary="A level of the city model as GeoJSON (simplified per zoom)")
def map_areas(request: Request, level: str, _: Caller, zoom: Zoom = 12, bbox: BBox = None) -> Response:
    box = parse_bbox(bbox)
    if box is not None:
        return _geo(layers.areas(_city(request), level, zoom, box))
    # The whole level: its GeoJSON text as made once per city model and zoom, with an ETag.
    text = layers.areas_text(_city(request), level, zoom)
    tag = '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": "private, max-age=60"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(text, media_type=GEOJSON, headers=headers)


@router.get("/api/v1/map/rows/{dataset}", summary="A dataset's rows in a box and window, as GeoJSON")
def map_rows(
    request: Request,
    dataset: str,
    who: Caller,
    bbox: Annotated[str, Query(description="xmin,ymin,xmax,ymax (lon/lat)")],
    start: Start = None,
    end: End = None,
    zoom: Zoom = 14,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> JSONResponse:
    v = Viewer(request.app.state, who)
    box = parse_bbox(bbox)
    if box is None:
        raise InputError("bbox is required: xmin,ymin,xmax,ymax")
    doc = layers.rows(
        request.app.state.cb,
        dataset,
        _scope(v, dataset),
        box,
        _t(start, "start"),
        _t(end, "end"),
        zoom,
        limit,
    )
    v.meter(dataset, "rows", len(doc["features"]))
    return _geo(doc)


@router.get("/api/v1/map/tiles/{dataset}/{z}/{x}/{y}.pbf", summary="A vector tile of a dataset's points")
def map_tile(
    request: Request, dataset: str, z: int, x: int, y: int, who: Caller, start: Start = None, end: End = None
) -> Response:
    v = Viewer(request.app.state, who)
    scope = _scope(v, dataset)
    data, n, points = tiles.tile(
        request.app.state.cb,
        dataset,
        scope,
        z,
        x,
        y,
        _t(start, "start"),
        _t(end, "end"),
        _index(request, scope, dataset),
    )
    v.meter(dataset, "tile", points)
    headers = {"X-Features": str(n), "X-Points": str(points), "Cache-Control": "private, max-age=5"}
    return Response(data, media_type=MVT, headers=headers)


@router.get("/api/v1/map/heat/{dataset}", summary="Rows per H3 cell in a window, for a heat map")
def map_heat(
    request: Request,
    dataset: str,
    who: Caller,
    start: Start = None,
    end: End = None,
    resolution: Annotated[int, Query(ge=0, le=15)] = 8,
) -> Response:
    v = Viewer(request.app.state, who)
    scope = _scope(v, dataset)
    cells, counts = layers.heat_counts(
        request.app.state.cb,
        dataset,
        scope,
        _t(start, "start"),
        _t(end, "end"),
        resolution,
        _index(request, scope, dataset),
    )
    v.meter(dataset, "heat", len(cells))
    text = layers.heat_text(cells, counts)
    return Response(text, media_type=GEOJSON, headers={"Cache-Control": "private, max-age=2"})


@router.get("/api/v1/map/sensors/{dataset}", summary="Each sensor's latest reading at a time")
def map_sensors(
    request: Request,
    dataset: str,
    who: Caller,
    at: Annotated[datetime, Query(description="The time to show (the newest reading at or before it).")],
    lookback: Annotated[float, Query(gt=0, le=24 * 30, description="Hours to look back.")] = 6,
) -> JSONResponse:
    cb = request.app.state.cb
    v = Viewer(request.app.state, who)
    scope = _scope(v, dataset)
    spec = cb.query.spec(dataset)
    if spec.kind is not Kind.series:
        raise InputError(f"dataset {dataset!r} is not a series")
    st = layers.station_dataset(cb, spec)
    stations = (st, _scope(v, st)) if st is not None and v.scope(st) is not None else None
    when = _at(at)
    doc = layers.sensors(cb, dataset, scope, when, timedelta(hours=lookback), stations)
    v.meter(dataset, "sensors", len(doc["features"]))
    return _geo(doc)


@router.get("/api/v1/map/vehicles/{dataset}", summary="Each moving object's latest position at a time")
def map_vehicles(
    request: Request,
    dataset: str,
    who: Caller,
    at: Annotated[datetime, Query(description="The time to show.")],
    window: Annotated[float, Query(gt=0, le=86400, description="Seconds to look back.")] = 300,
) -> JSONResponse:
    v = Viewer(request.app.state, who)
    when = _at(at)
    scope = _scope(v, dataset)
    index = _index(request, scope, dataset)
    doc = layers.vehicles(request.app.state.cb, dataset, scope, when, timedelta(seconds=window), index)
    v.meter(dataset, "vehicles", len(doc["features"]))
    return _geo(doc)


# -- everything about a place; figures ------------------------------------------------------------


@router.get(
    "/api/v1/map/place/{level}/{code}", summary="Everything about a place, through the caller's grants"
)
def map_place(
    request: Request,
    level: str,
    code: str,
    who: Caller,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 20,
) -> JSONResponse:
    v = Viewer(request.app.state, who)
    doc = place_report(request.app.state.cb, v, level, code, _t(start, "start"), _t(end, "end"), limit)
    return JSONResponse(jsonable(doc))


@router.get("/api/v1/map/figures", response_model=Figures, summary="The platform's figures, live")
def map_figures(request: Request, _: Caller) -> Figures:
    src = getattr(request.app.state, "console_figures", None)
    if not isinstance(src, FigureSource):
        src = FigureSource()
        request.app.state.console_figures = src
    return src.get(request.app.state)


@router.get("/api/v1/map/index", summary="The map's in-memory index: per dataset, built or not, rows held")
def map_index_status(request: Request, _: Caller) -> dict[str, dict[str, Any]]:
    return map_index(request.app.state).status()
