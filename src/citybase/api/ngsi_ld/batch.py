"""Routes of /entityOperations (clause 6.14 to 6.18, 6.23): batch create, upsert, update, delete,
merge and query. Each entity succeeds or fails on its own; a partial outcome answers 207."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import (
    GEO,
    JSON,
    LD,
    Call,
    Router,
    begin_with_body,
    int_param,
    no_content,
    options_of,
)
from citybase.api.ngsi_ld.views import present, view_of
from citybase.context.errors import BadRequestData, NgsiError
from citybase.context.geo import parse_geoquery
from citybase.context.jsonld import ActiveContext
from citybase.context.model import is_uri, parse_attributes, parse_entity
from citybase.context.qlang import parse_q
from citybase.context.query import EntityQuery, parse_id_pattern, run

router = Router()


def _entities(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise BadRequestData("a batch operation takes a JSON array")
    if not body:
        raise BadRequestData("a batch operation needs at least one entity")
    return body


def _ctx(call: Call, item: Any) -> ActiveContext:
    """The @context of one batch member: its own (JSON-LD) or the Link header's (JSON)."""
    ctype = (call.request.headers.get("content-type") or "").split(";")[0].strip()
    if not isinstance(item, dict):
        raise BadRequestData("a batch member must be a JSON object")
    if ctype == LD:
        if "@context" not in item:
            raise BadRequestData("a JSON-LD batch member needs an @context")
        return call.service.contexts.active(item["@context"])
    if "@context" in item:
        raise BadRequestData("an application/json batch member may not carry @context")
    return call.ctx


def _error(eid: Any, e: NgsiError) -> dict[str, Any]:
    return {"entityId": eid if isinstance(eid, str) else "", "error": e.problem()}


def _answer(call: Call, ok: list[str], errors: list[dict[str, Any]], *, created: bool) -> Response:
    if errors:
        return call.respond({"success": ok, "errors": errors}, 207, with_context=False)
    if created:
        return call.respond(ok, 201, with_context=False)
    return no_content(call)


@router.post("/entityOperations/create")
async def batch_create(request: Request) -> Response:
    call, body = await begin_with_body(request, batch=True, params=("local",))
    if (request.headers.get("content-type") or "").startswith(LD) and request.headers.get("link"):
        raise BadRequestData("a JSON-LD request carries its @context in the body, not in Link")
    ok: list[str] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in _entities(body):
        eid = item.get("id") if isinstance(item, dict) else None
        try:
            ent = parse_entity(item, _ctx(call, item))
            if ent["id"] in seen:
                raise BadRequestData(f"entity {ent['id']} appears twice in the batch")
            seen.add(ent["id"])
            call.service.broker.create(call.tenant, ent)
            ok.append(ent["id"])
        except NgsiError as e:
            errors.append(_error(eid, e))
    return _answer(call, ok, errors, created=True)


@router.post("/entityOperations/upsert")
async def batch_upsert(request: Request) -> Response:
    call, body = await begin_with_body(request, batch=True, params=("options", "local"))
    opts = options_of(call)
    if "update" in opts and "replace" in opts:
        raise BadRequestData("options replace and update exclude each other")
    ok: list[str] = []
    created: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in _entities(body):
        eid = item.get("id") if isinstance(item, dict) else None
        try:
            ent = parse_entity(item, _ctx(call, item))
            _, was_created = call.service.broker.upsert(call.tenant, ent, replace="update" not in opts)
            ok.append(ent["id"])
            if was_created:
                created.append(ent["id"])
        except NgsiError as e:
            errors.append(_error(eid, e))
    if errors:
        return call.respond({"success": ok, "errors": errors}, 207, with_context=False)
    if created:
        return call.respond(created, 201, with_context=False)
    return no_content(call)


@router.post("/entityOperations/update")
async def batch_update(request: Request) -> Response:
    call, body = await begin_with_body(request, batch=True, params=("options", "local"))
    opts = options_of(call)
    ok: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in _entities(body):
        eid = item.get("id") if isinstance(item, dict) else None
        try:
            ent = parse_entity(item, _ctx(call, item), require_type=False)
            _, result = call.service.broker.append(
                call.tenant, ent["id"], ent, overwrite="noOverwrite" not in opts
            )
            if result.not_updated:
                names = ", ".join(n for n, _ in result.not_updated)
                raise BadRequestData(f"attributes not updated (noOverwrite): {names}")
            ok.append(ent["id"])
        except NgsiError as e:
            errors.append(_error(eid, e))
    return _answer(call, ok, errors, created=False)


@router.post("/entityOperations/merge")
async def batch_merge(request: Request) -> Response:
    call, body = await begin_with_body(request, batch=True, params=("options", "local"))
    ok: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in _entities(body):
        eid = item.get("id") if isinstance(item, dict) else None
        try:
            ctx = _ctx(call, item)
            ent = parse_entity(item, ctx, require_type=False)
            ent["attrs"] = parse_attributes(item, ctx, allow_null=True)
            call.service.broker.merge(call.tenant, ent["id"], ent)
            ok.append(ent["id"])
        except NgsiError as e:
            errors.append(_error(eid, e))
    return _answer(call, ok, errors, created=False)


@router.post("/entityOperations/delete")
async def batch_delete(request: Request) -> Response:
    call, body = await begin_with_body(request, batch=True, params=("local",))
    ok: list[str] = []
    errors: list[dict[str, Any]] = []
    for eid in _entities(body):
        try:
            if not is_uri(eid):
                raise BadRequestData(f"{eid!r} is not an entity id")
            call.service.broker.delete(call.tenant, eid)
            ok.append(eid)
        except NgsiError as e:
            errors.append(_error(eid, e))
    return _answer(call, ok, errors, created=False)


@router.post("/entityOperations/query")
async def batch_query(request: Request) -> Response:
    call, body = await begin_with_body(
        request,
        params=(
            "limit",
            "offset",
            "count",
            "options",
            "format",
            "local",
            "lang",
            "join",
            "joinLevel",
            "geometryProperty",
        ),
        accept=(JSON, LD, GEO),
    )
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData("the body must be a Query (type: Query)")
    ctx = call.ctx
    queries: list[EntityQuery] = []
    for sel in body.get("entities") or [{}]:
        q = EntityQuery()
        if "type" in sel:
            q.types = [[ctx.expand(t)] for t in str(sel["type"]).split(",")]
        if "id" in sel:
            q.ids = [sel["id"]]
        if "idPattern" in sel:
            q.id_pattern = parse_id_pattern(sel["idPattern"])
        queries.append(q)
    attrs = body.get("attrs")
    predicate = parse_q(body["q"], ctx) if body.get("q") else None
    geo = None
    if body.get("geoQ"):
        g = body["geoQ"]
        geo = parse_geoquery(g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
    view = view_of(call, attrs_param=False)
    if attrs:
        view.attrs = {ctx.expand(a) for a in attrs}
    found: dict[str, Any] = {}
    for q in queries:
        q.q = predicate
        q.geo = geo
        q.scope_q = body.get("scopeQ")
        if attrs:
            q.attrs = view.attrs
        for e in run(call.service.store, call.tenant, q):
            found[e["id"]] = e
    limit = int_param(call, "limit", 20) or 0
    offset = int_param(call, "offset", 0) or 0
    items = present(call, [found[k] for k in sorted(found)][offset : offset + limit], view, body)
    headers = {"NGSILD-Results-Count": str(len(found))} if call.param("count") == "true" else None
    if call.accept == GEO:
        from citybase.api.ngsi_ld.entities import _geojson

        return _geojson(call, items, headers=headers)
    return call.respond(items, headers=headers)
