"""Routes of /entities (clauses 6.4 to 6.7): create, retrieve, query, replace, merge, delete entities
and their attributes. Each route parses, calls the broker, and renders; nothing else."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import (
    GEO,
    JSON,
    LD,
    Call,
    Router,
    begin,
    begin_with_body,
    int_param,
    no_content,
    options_of,
    split,
)
from citybase.api.ngsi_ld.views import present, view_of
from citybase.context.errors import BadRequestData, InvalidRequest, ResourceNotFound, TooManyResults
from citybase.context.geo import parse_geoquery
from citybase.context.model import (
    check_name,
    is_uri,
    parse_attribute,
    parse_entity,
    parse_instance,
    parse_scope,
)
from citybase.context.providers import live, page_with, provided
from citybase.context.qlang import parse_q
from citybase.context.query import EntityQuery, order, parse_id_pattern, parse_types, run
from citybase.context.render import to_feature

router = Router()

MAX_LIMIT = 1000
QUERY_PARAMS = (
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
    "geometryProperty",
    "lang",
    "scopeQ",
    "options",
    "format",
    "limit",
    "offset",
    "count",
    "local",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "collation",
    "expandValues",
    "via",
    "orderBy",
)
RETRIEVE_PARAMS = (
    "attrs",
    "pick",
    "omit",
    "options",
    "format",
    "lang",
    "geometryProperty",
    "local",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
    "via",
)


def _viewer(request: Request) -> Any:
    """Whom read-only providers answer for: the request's key (none when open on loopback)."""
    return getattr(request.state, "principal", None)


def _entity_id(eid: str) -> str:
    if not is_uri(eid):
        raise BadRequestData(f"entity id {eid!r} is not a URI")
    return eid


@router.post("/entities")
async def create_entity(request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    ent = parse_entity(body, call.ctx)
    call.service.broker.create(call.tenant, ent)
    return no_content(call, 201, {"Location": f"/ngsi-ld/v1/entities/{ent['id']}"})


@router.get("/entities/{entity_id}")
async def retrieve_entity(entity_id: str, request: Request) -> Response:
    call = begin(request, params=RETRIEVE_PARAMS, accept=(JSON, LD, GEO))
    _entity_id(entity_id)
    view = view_of(call)
    try:
        ent = call.service.broker.get(call.tenant, entity_id)
    except ResourceNotFound:
        got = await run_in_threadpool(provided, call.service.providers, _viewer(request), entity_id)
        if got is None:
            raise
        ent = got
    if (
        view.attrs is not None
        and not any(a in ent["attrs"] for a in view.attrs)
        and (call.param("attrs") is not None or not view.pick_core)
    ):
        raise ResourceNotFound(f"entity {entity_id} has none of the attributes asked for")
    items = present(call, [ent], view)
    out: Any = items if call.param("join") == "flat" and len(items) > 1 else items[0]
    if not out:
        raise ResourceNotFound(f"nothing of entity {entity_id} is left after pick / omit")
    if call.accept == GEO:
        return _geojson(call, [out], single=True)
    return call.respond(out)


def _geojson(
    call: Call, items: list[dict[str, Any]], *, single: bool = False, headers: dict[str, str] | None = None
) -> Response:
    prop = call.param("geometryProperty") or "location"
    ctx_url = call.context if call.context is not None else None
    feats = [to_feature(i, prop) for i in items]
    from citybase.context.contexts import CORE_URL

    ctx_value = ctx_url if ctx_url is not None else CORE_URL
    if single:
        body: dict[str, Any] = {**feats[0], "@context": ctx_value}
    else:
        body = {"type": "FeatureCollection", "features": feats, "@context": ctx_value}
    return call.respond(body, headers=headers, with_context=False)


def build_query(call: Call, *, require_filter: bool = True) -> EntityQuery:
    """An EntityQuery from the request's parameters (shared with the temporal routes)."""
    ctx = call.ctx
    q = EntityQuery()
    types = call.param("type")
    if types is not None:
        if not types.strip():
            raise BadRequestData("type is empty")
        for t in types.replace("(", ",").replace(")", ",").replace("|", ",").replace(";", ",").split(","):
            if t:
                check_name(t)
        q.types = parse_types(types, ctx)
    ids = split(call.param("id"))
    if ids is not None:
        for i in ids:
            if not is_uri(i):
                raise BadRequestData(f"id {i!r} is not a URI")
        q.ids = ids
    pattern = call.param("idPattern")
    if pattern is not None:
        q.id_pattern = parse_id_pattern(pattern)
    text = call.param("q")
    if text is not None:
        try:
            q.q = parse_q(text, ctx)
        except InvalidRequest as e:
            raise BadRequestData(e.detail) from e
    q.scope_q = call.param("scopeQ")
    geoprop = call.param("geoproperty")
    q.geo = parse_geoquery(call.param("georel"), call.param("geometry"), call.param("coordinates"), geoprop)
    if geoprop is not None:
        q.geoproperty = ctx.expand(geoprop)
    attrs = split(call.param("attrs"))
    if attrs is not None:
        for a in attrs:
            check_name(a)
            if a in ("id", "type", "scope", "createdAt", "modifiedAt"):
                raise BadRequestData(f"{a} is not an attribute name")
        q.attrs = {ctx.expand(a) for a in attrs}
    if (
        require_filter
        and q.types is None
        and q.q is None
        and q.geo is None
        and q.attrs is None
        and q.scope_q is None
        and call.param("local") != "true"
    ):
        raise BadRequestData("a query needs at least one of type, attrs, q, scopeQ or a geo-query")
    return q


@router.get("/entities")
async def query_entities(request: Request) -> Response:
    call = begin(request, params=QUERY_PARAMS, accept=(JSON, LD, GEO))
    opts = options_of(call)
    view = view_of(call, opts)
    query = build_query(call)
    limit = int_param(call, "limit", 20)
    offset = int_param(call, "offset", 0)
    assert limit is not None and offset is not None
    if limit > MAX_LIMIT:
        raise TooManyResults(f"limit {limit} is over the maximum {MAX_LIMIT}")
    count = call.param("count")
    if count not in (None, "true", "false"):
        raise BadRequestData("count must be true or false")
    if limit == 0 and count != "true":
        raise BadRequestData("limit=0 needs count=true")
    found = run(call.service.store, call.tenant, query)
    providers, viewer = live(call.service.providers, query), _viewer(request)
    if providers and call.param("orderBy"):
        found, _ = await run_in_threadpool(page_with, providers, viewer, query, found, 0, None)
    if call.param("orderBy"):
        found = order(found, call.param("orderBy") or "", call.ctx)
    if providers and not call.param("orderBy"):  # provider reads run off the event loop
        shown, total = await run_in_threadpool(page_with, providers, viewer, query, found, offset, limit)
    else:
        shown, total = found[offset : offset + limit], len(found)
    items = [i for i in present(call, shown, view) if i]
    headers: dict[str, str] = {}
    if count == "true":
        headers["NGSILD-Results-Count"] = str(total)
    links = pagination_links(request, total, limit, offset)
    if call.accept == GEO:
        return _geojson(call, items, headers=headers)
    resp = call.respond(items, headers=headers)
    if links:
        resp.headers["Link"] = ",".join(links)
    return resp


def pagination_links(request: Request, total: int, limit: int, offset: int) -> list[str]:
    """Link headers to the previous and next pages (clause 5.5.9)."""
    out = []
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]
    path = request.url.path
    if offset > 0 and limit > 0:
        prev = max(offset - limit, 0)
        out.append(
            f"<{path}?{urlencode([*params, ('limit', limit), ('offset', prev)], quote_via=quote)}>;"
            f'rel="prev";type="application/ld+json"'
        )
    if limit > 0 and offset + limit < total:
        out.append(
            f"<{path}?{urlencode([*params, ('limit', limit), ('offset', offset + limit)], quote_via=quote)}>;"
            f'rel="next";type="application/ld+json"'
        )
    return out


@router.delete("/entities")
async def purge_entities(request: Request) -> Response:
    call = begin(request, params=("type", "id", "idPattern", "q", "scopeQ", "local", "keep", "drop"))
    keep, drop = split(call.param("keep")), split(call.param("drop"))
    if keep is not None and drop is not None:
        raise BadRequestData("keep and drop exclude each other")
    # Purging names its entities by id as well as by type, q or scope (ETSI 060_05).
    named = call.param("id") is not None or call.param("idPattern") is not None
    query = build_query(call, require_filter=call.param("local") != "true" and not named)
    found = run(call.service.store, call.tenant, query)
    ids = [e["id"] for e in found]
    if (keep is not None or drop is not None) and found:
        kept = {call.ctx.expand(a) for a in keep} if keep is not None else None
        dropped = {call.ctx.expand(a) for a in drop} if drop is not None else set()
        for e in found:
            for a in list(e["attrs"]):
                if (kept is not None and a not in kept) or a in dropped:
                    call.service.broker.delete_attribute(call.tenant, e["id"], a, delete_all=True)
        return no_content(call)
    if ids:
        call.service.broker.purge(call.tenant, None, ids)
    return no_content(call)


@router.patch("/entities")
@router.put("/entities")
async def _no_entity_id(request: Request) -> Response:
    raise BadRequestData("the entity id is missing from the path")


@router.delete("/entities/{entity_id}")
async def delete_entity(entity_id: str, request: Request) -> Response:
    call = begin(request, params=("type", "local", "via"))
    _entity_id(entity_id)
    call.service.broker.delete(call.tenant, entity_id)
    if call.service.delete_together and call.service.history is not None:
        call.service.history.tombstone(call.tenant, entity_id)  # hidden from /temporal, kept in the lake
    return no_content(call)


@router.put("/entities/{entity_id}")
async def replace_entity(entity_id: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local", "format", "options"))
    _entity_id(entity_id)
    if isinstance(body, dict) and "id" in body and body["id"] != entity_id:
        raise BadRequestData("the id in the body differs from the id in the path")
    ent = parse_entity({**body, "id": entity_id}, call.ctx) if isinstance(body, dict) else None
    if ent is None:
        raise BadRequestData("the entity must be a JSON object")
    call.service.broker.replace(call.tenant, entity_id, ent)
    return no_content(call)


@router.patch("/entities/{entity_id}")
async def merge_entity(entity_id: str, request: Request) -> Response:
    call, body = await begin_with_body(
        request, params=("options", "format", "local", "observedAt", "lang"), merge=True
    )
    _entity_id(entity_id)
    if not isinstance(body, dict):
        raise BadRequestData("the fragment must be a JSON object")
    if "id" in body and body["id"] != entity_id:
        raise BadRequestData("the id in the body differs from the id in the path")
    frag = parse_entity({**body, "id": entity_id}, call.ctx, require_type=False, allow_null=True)
    call.service.broker.merge(call.tenant, entity_id, frag)
    return no_content(call)


@router.post("/entities/{entity_id}/attrs")
async def append_attributes(entity_id: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("options", "local"))
    _entity_id(entity_id)
    opts = options_of(call)
    if not isinstance(body, dict):
        raise BadRequestData("the fragment must be a JSON object")
    if "id" in body and body["id"] != entity_id:
        raise BadRequestData("the id in the body differs from the id in the path")
    frag = parse_entity({**body, "id": entity_id}, call.ctx, require_type=False)
    if "scope" in body:
        frag["scope"] = parse_scope(body["scope"])
    _, result = call.service.broker.append(call.tenant, entity_id, frag, overwrite="noOverwrite" not in opts)
    if result.not_updated:
        return call.respond(_update_result(result.updated, result.not_updated), 207, with_context=False)
    return no_content(call)


def _update_result(updated: list[str], not_updated: list[tuple[str, str]]) -> dict[str, Any]:
    """An UpdateResult (207). It goes without an @context, so attribute names are full IRIs: a
    short name would mean nothing to a reader (the ETSI suite's 010_04 expects them so)."""
    return {
        "updated": list(updated),
        "notUpdated": [{"attributeName": n, "reason": r} for n, r in not_updated],
    }


@router.patch("/entities/{entity_id}/attrs")
async def update_attributes(entity_id: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("options", "local"))
    _entity_id(entity_id)
    if not isinstance(body, dict):
        raise BadRequestData("the fragment must be a JSON object")
    if "id" in body and body["id"] != entity_id:
        raise BadRequestData("the id in the body differs from the id in the path")
    frag = parse_entity({**body, "id": entity_id}, call.ctx, require_type=False, allow_null=True)
    if "scope" in body:
        frag["scope"] = parse_scope(body["scope"])
    _, result = call.service.broker.update(call.tenant, entity_id, frag)
    if result.not_updated:
        return call.respond(_update_result(result.updated, result.not_updated), 207, with_context=False)
    return no_content(call)


@router.patch("/entities/{entity_id}/attrs/{attr}")
async def partial_update_attribute(entity_id: str, attr: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",), merge=True)
    _entity_id(entity_id)
    check_name(attr)
    if not isinstance(body, dict):
        raise BadRequestData("the attribute fragment must be a JSON object")
    inst = _partial_instance(attr, body, call)
    call.service.broker.partial_update(call.tenant, entity_id, call.ctx.expand(attr), inst)
    return no_content(call)


def _partial_instance(attr: str, body: dict[str, Any], call: Call) -> dict[str, Any]:
    if "type" in body or any(
        k in body for k in ("value", "object", "languageMap", "json", "vocab", "valueList", "objectList")
    ):
        return parse_instance(attr, body, call.ctx, allow_null=True)
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k == "@context":
            continue
        if k in ("datasetId", "observedAt", "unitCode"):
            out[k] = v
        else:
            out[call.ctx.expand(k)] = parse_instance(k, v, call.ctx, allow_null=True, sub=True)
    return out


@router.put("/entities/{entity_id}/attrs/{attr}")
async def replace_attribute(entity_id: str, attr: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    _entity_id(entity_id)
    check_name(attr)
    if attr == "scope":
        raise BadRequestData("scope is not an attribute; replace it with a PATCH of the entity")
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "@context"}
    instances = parse_attribute(attr, body, call.ctx)
    call.service.broker.replace_attribute(call.tenant, entity_id, call.ctx.expand(attr), instances)
    return no_content(call)


@router.delete("/entities/{entity_id}/attrs/{attr}")
async def delete_attribute(entity_id: str, attr: str, request: Request) -> Response:
    call = begin(request, params=("datasetId", "deleteAll", "local"))
    _entity_id(entity_id)
    check_name(attr)
    delete_all = call.param("deleteAll") == "true"
    ds = call.param("datasetId")
    try:
        call.service.broker.delete_attribute(
            call.tenant,
            entity_id,
            attr if attr == "scope" else call.ctx.expand(attr),
            dataset_id=ds,
            delete_all=delete_all,
        )
    except ResourceNotFound:
        raise
    return no_content(call)
