"""Routes of /temporal (clauses 6.18 to 6.22, 6.24): the temporal representation of entities, read
from the attribute history in the lake, and its direct provision (create, add, delete, edit)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import (
    Call,
    Router,
    begin,
    begin_with_body,
    int_param,
    no_content,
    options_of,
    split,
)
from citybase.api.ngsi_ld.entities import build_query
from citybase.api.ngsi_ld.views import view_of
from citybase.context.errors import BadRequestData, NgsiError, OperationNotSupported, ResourceNotFound
from citybase.context.geo import parse_geoquery
from citybase.context.history import History
from citybase.context.model import ENTITY_CORE, check_name, is_uri, now_iso, parse_entity, parse_instance
from citybase.context.qlang import parse_q
from citybase.context.query import EntityQuery, order, parse_id_pattern
from citybase.context.render import View
from citybase.context.temporal import AGGR_METHODS, TimeFilter, assemble, parse_duration, render_temporal

router = Router()
TEMPORAL_PARAMS = (
    "id",
    "type",
    "idPattern",
    "attrs",
    "pick",
    "omit",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "options",
    "format",
    "aggrMethods",
    "aggrPeriodDuration",
    "limit",
    "offset",
    "count",
    "lang",
    "local",
    "scopeQ",
    "datasetId",
    "via",
    "expandValues",
    "join",
    "joinLevel",
    "orderBy",
)


def _current(call: Call, ent: dict[str, Any]) -> None:
    """Keep the current state in step: the latest instance of each attribute (and dataset)."""
    latest: dict[str, list[dict[str, Any]]] = {}
    for attr, instances in ent["attrs"].items():
        by_ds: dict[Any, tuple[str, dict[str, Any]]] = {}
        for inst in instances:
            key = inst.get("datasetId")
            t = str(inst.get("observedAt", ""))
            if key not in by_ds or t >= by_ds[key][0]:
                by_ds[key] = (t, inst)
        latest[attr] = [i for _, i in by_ds.values()]
    # The temporal representation stands on its own if the current state refuses it.
    with contextlib.suppress(NgsiError):
        call.service.broker.upsert(call.tenant, {**ent, "attrs": latest}, replace=False, announce=False)


def _history(call: Call) -> History:
    h = call.service.history
    if h is None:
        raise OperationNotSupported("this platform keeps no attribute history")
    return h


def _check_instance(attr: str, instance_id: str) -> None:
    check_name(attr)
    if not is_uri(instance_id):
        raise BadRequestData(f"instance id {instance_id!r} is not a URI")


def _check_id(eid: str) -> None:
    if not is_uri(eid):
        raise BadRequestData(f"entity id {eid!r} is not a URI")


def _temporal_rows(call: Call, entity: dict[str, Any]) -> list[dict[str, Any]]:
    h = _history(call)
    when = now_iso()
    rows = []
    for attr, instances in entity["attrs"].items():
        for inst in instances:
            inst = {**inst, "createdAt": when, "modifiedAt": when}
            rows.append(h.row(call.tenant, entity, attr, inst))
    return rows


@router.post("/temporal/entities")
async def create_temporal(request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    ent = parse_entity(body, call.ctx, temporal=True)
    h = _history(call)
    existed = h.exists(call.tenant, ent["id"])
    rows = _temporal_rows(call, ent)
    if not rows:
        rows = [
            h.row(
                call.tenant,
                ent,
                "@none",
                {"type": "Property", "value": None, "modifiedAt": now_iso(), "createdAt": now_iso()},
            )
        ]
    h.append(rows)
    _current(call, ent)
    if existed:
        return no_content(call)
    return no_content(call, 201, {"Location": f"/ngsi-ld/v1/temporal/entities/{ent['id']}"})


@router.post("/temporal/entities/{entity_id}/attrs")
async def add_temporal_attributes(entity_id: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    _check_id(entity_id)
    h = _history(call)
    rows = h.rows(call.tenant, entity_ids=[entity_id])
    if not rows:
        raise ResourceNotFound(f"no temporal entity {entity_id}")
    types = assemble(rows)[entity_id].types
    ent = parse_entity({**body, "id": entity_id}, call.ctx, require_type=False, temporal=True)
    ent["type"] = types
    h.append(_temporal_rows(call, ent))
    return no_content(call)


@router.delete("/temporal/entities/{entity_id}")
async def delete_temporal(entity_id: str, request: Request) -> Response:
    call = begin(request, params=("local", "type"))
    _check_id(entity_id)
    h = _history(call)
    if not h.exists(call.tenant, entity_id):
        raise ResourceNotFound(f"no temporal entity {entity_id}")
    h.tombstone(call.tenant, entity_id)
    if call.service.delete_together:  # the current entity goes with its temporal representation
        with contextlib.suppress(NgsiError):
            call.service.broker.delete(call.tenant, entity_id, announce=False)
    return no_content(call)


@router.delete("/temporal/entities/{entity_id}/attrs/{attr}")
async def delete_temporal_attribute(entity_id: str, attr: str, request: Request) -> Response:
    call = begin(request, params=("local", "datasetId", "deleteAll"))
    _check_id(entity_id)
    check_name(attr)
    h = _history(call)
    iri = call.ctx.expand(attr)
    rows = h.rows(call.tenant, entity_ids=[entity_id])
    if not rows:
        raise ResourceNotFound(f"no temporal entity {entity_id}")
    mine = [r for r in rows if r["attr"] == iri]
    delete_all = call.param("deleteAll") == "true"
    ds = call.param("datasetId") or ""
    if not delete_all:
        mine = [r for r in mine if r["dataset_id"] == ds]
    if not mine:
        raise ResourceNotFound(f"no attribute {attr} in {entity_id}")
    h.tombstone(call.tenant, entity_id, iri, "*" if delete_all else ds)
    return no_content(call)


@router.patch("/temporal/entities/{entity_id}/attrs/{attr}/{instance_id:path}")
async def modify_instance(entity_id: str, attr: str, instance_id: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    _check_id(entity_id)
    _check_instance(attr, instance_id)
    h = _history(call)
    iri = call.ctx.expand(attr)
    rows = [r for r in h.rows(call.tenant, entity_ids=[entity_id]) if r["attr"] == iri]
    target = next((r for r in rows if r["instance_id"] == instance_id), None)
    if target is None:
        raise ResourceNotFound(f"no instance {instance_id} of {attr} in {entity_id}")
    frag = body.get(attr, body) if isinstance(body, dict) else body
    if isinstance(frag, list):
        frag = frag[0] if frag else {}
    if isinstance(frag, dict):
        frag = {k: v for k, v in frag.items() if k != "@context"}
    new = parse_instance(attr, frag, call.ctx)
    merged = {**target["instance"], **new, "instanceId": instance_id, "modifiedAt": now_iso()}
    h.override(call.tenant, instance_id, merged)
    return no_content(call)


@router.delete("/temporal/entities/{entity_id}/attrs/{attr}/{instance_id:path}")
async def delete_instance(entity_id: str, attr: str, instance_id: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    _check_id(entity_id)
    _check_instance(attr, instance_id)
    h = _history(call)
    iri = call.ctx.expand(attr)
    rows = [r for r in h.rows(call.tenant, entity_ids=[entity_id]) if r["attr"] == iri]
    if not any(r["instance_id"] == instance_id for r in rows):
        raise ResourceNotFound(f"no instance {instance_id} of {attr} in {entity_id}")
    h.tombstone(call.tenant, entity_id, iri, instance_id=instance_id)
    return no_content(call)


def _mode(call: Call, opts: set[str]) -> tuple[str, list[str] | None, Any]:
    if "temporalValues" in opts and "aggregatedValues" in opts:
        raise BadRequestData("temporalValues and aggregatedValues exclude each other")
    if "aggregatedValues" in opts:
        methods = split(call.param("aggrMethods"))
        if methods is None:
            raise BadRequestData("aggregatedValues needs aggrMethods")
        bad = [m for m in methods if m not in AGGR_METHODS]
        if bad:
            raise BadRequestData(f"unknown aggrMethods {bad}")
        period = parse_duration(call.param("aggrPeriodDuration") or "P0D")
        return "aggregatedValues", methods, period
    if "temporalValues" in opts:
        return "temporalValues", None, None
    return "normalized", None, None


def _respond(call: Call, query: EntityQuery | None, ids: list[str] | None, *, single: bool) -> Response:
    opts = options_of(call)
    view: View = view_of(call, opts)
    mode, methods, period = _mode(call, opts)
    tf = TimeFilter.parse(
        call.param("timerel"),
        call.param("timeAt"),
        call.param("endTimeAt"),
        call.param("timeproperty"),
        call.param("lastN"),
    )
    lo, hi = tf.bounds()
    h = _history(call)
    attrs = None
    if view.attrs is not None and (query is None or query.q is None):
        attrs = view.attrs
    if attrs is not None and not attrs and view.pick_core and call.param("attrs") is None:
        attrs = None  # a pick of core members only (id, type): every entity, none of its attributes
    rows = h.rows(call.tenant, entity_ids=ids, attrs=attrs, time_column=tf.timeproperty, after=lo, before=hi)
    if single and not rows:
        assert ids is not None
        if not h.exists(call.tenant, ids[0]):
            raise ResourceNotFound(f"no temporal entity {ids[0]}")
        if attrs is not None and lo is None and hi is None:
            raise ResourceNotFound(f"temporal entity {ids[0]} has none of the attributes asked for")
    entities = assemble(rows, tf.last_n)
    for e in entities.values():
        e.attrs.pop("@none", None)
    content_range = _paginate(list(entities.values()), tf, call.service.temporal_instance_limit)
    found = sorted(entities.values(), key=lambda e: e.id)
    if query is not None:
        found = [e for e in found if query.matches(e.latest())]
    if call.param("orderBy"):
        by_id = {e.id: e for e in found}
        found = [
            by_id[x["id"]] for x in order([e.latest() for e in found], call.param("orderBy") or "", call.ctx)
        ]
    out = [
        render_temporal(
            e, view, mode=mode, prop=tf.timeproperty, aggr=methods, period=period, window=(lo, hi)
        )
        for e in found
    ]
    if not single and call.param("attrs") is not None and view.dataset_ids is not None:
        # The attributes asked for have no instance of those datasets: the entity does not match.
        out = [o for o in out if set(o) - ENTITY_CORE]
    if single:
        entity_ids = ids or []
        if not out:
            assert ids is not None
            out = [
                {
                    "id": ids[0],
                    "type": view.ctx.compact(assemble(h.rows(call.tenant, entity_ids=ids))[ids[0]].types[0]),
                }
            ]
        if not out[0]:
            raise ResourceNotFound(f"nothing of {entity_ids[0]} is left after pick / omit")
        return call.respond(
            out[0], 206 if content_range else 200, {"Content-Range": content_range} if content_range else None
        )
    limit = int_param(call, "limit", 20) or 0
    offset = int_param(call, "offset", 0) or 0
    headers = {"NGSILD-Results-Count": str(len(out))} if call.param("count") == "true" else {}
    if content_range:
        headers["Content-Range"] = content_range
    return call.respond(out[offset : offset + limit], 206 if content_range else 200, headers)


def _paginate(entities: list[Any], tf: TimeFilter, limit: int) -> str | None:
    """Temporal pagination (clause 6.3.22): at most `limit` instances per attribute; when cut,
    the Content-Range says which time span was returned (newest first with lastN)."""
    cut = False
    times: list[datetime] = []
    for e in entities:
        for a, items in e.attrs.items():
            if len(items) > limit:
                cut = True
                e.attrs[a] = items[-limit:] if tf.last_n is not None else items[:limit]
            times.extend(t for t, _ in e.attrs[a] if t is not None)
    if not cut or not times:
        return None
    lo, hi = min(times), max(times)
    if tf.last_n is not None:
        start = tf.end_time_at if tf.timerel == "between" else tf.time_at if tf.timerel == "before" else hi
        end = lo
        size = str(tf.last_n)
    else:
        start = tf.time_at if tf.timerel in ("after", "between") else lo
        end = hi
        size = "*"
    assert start is not None
    return f"date-time {_z(start)}-{_z(end)}/{size}"


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get("/temporal/entities/{entity_id}")
async def retrieve_temporal(entity_id: str, request: Request) -> Response:
    call = begin(request, params=TEMPORAL_PARAMS)
    _check_id(entity_id)
    return _respond(call, None, [entity_id], single=True)


@router.get("/temporal/entities")
async def query_temporal(request: Request) -> Response:
    call = begin(request, params=TEMPORAL_PARAMS)
    query = build_query(call)
    if query.attrs is not None:
        query.attrs = None  # attrs selects what to show; the entity may lack some
    return _respond(call, query, query.ids, single=False)


@router.post("/temporal/entityOperations/query")
async def query_temporal_post(request: Request) -> Response:
    call, body = await begin_with_body(
        request, params=("limit", "offset", "count", "options", "format", "local", "lang", "lastN")
    )
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData("the body must be a Query (type: Query)")
    q = EntityQuery()
    sels = body.get("entities") or []
    if sels:
        q.types = [
            [call.ctx.expand(t)] for s in sels if "type" in s for t in str(s["type"]).split(",")
        ] or None
        ids = [s["id"] for s in sels if "id" in s]
        q.ids = ids or None
        pats = [s["idPattern"] for s in sels if "idPattern" in s]
        if pats:
            q.id_pattern = parse_id_pattern("|".join(pats))
    if body.get("q"):
        q.q = parse_q(body["q"], call.ctx)
    if body.get("geoQ"):
        g = body["geoQ"]
        q.geo = parse_geoquery(g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
    tq = body.get("temporalQ") or {}
    params = dict(call.request.query_params)
    for k in ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"):
        if k in tq:
            params[k] = str(tq[k])
    if body.get("attrs"):
        params["attrs"] = ",".join(body["attrs"])
    call.request.scope["query_string"] = "&".join(f"{k}={v}" for k, v in params.items()).encode()
    del call.request._query_params  # re-read after the rewrite
    return _respond(call, q, q.ids, single=False)
