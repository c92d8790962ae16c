"""Routes of /jsonldContexts (clause 6.29 to 6.31): list, serve, add and delete @context documents."""

from __future__ import annotations

import json
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import (
    JSON,
    Router,
    check_params,
    dumps,
    service_of,
    tenant_of,
)
from citybase.context.errors import BadRequestData, InvalidRequest

router = Router()


@router.get("/jsonldContexts")
async def list_contexts(request: Request) -> Response:
    tenant_of(request)
    check_params(request, ("details", "kind"))
    reg = service_of(request).contexts
    details = request.query_params.get("details")
    kind = request.query_params.get("kind")
    if details not in (None, "true", "false"):
        raise BadRequestData("details must be true or false")
    if kind is not None and kind not in ("Hosted", "Cached", "ImplicitlyCreated"):
        raise BadRequestData(f"kind {kind!r} is not Hosted, Cached or ImplicitlyCreated")
    items = reg.listed(kind)
    body = [s.details() for s in items] if details == "true" else [s.url for s in items]
    return Response(dumps(body), media_type=JSON)


@router.get("/jsonldContexts/{ident:path}")
async def serve_context(ident: str, request: Request) -> Response:
    tenant_of(request)
    check_params(request, ("details",))
    reg = service_of(request).contexts
    stored = reg.find(unquote(ident))
    if request.query_params.get("details") == "true":
        return Response(dumps(stored.details()), media_type=JSON)
    return Response(dumps(stored.document), media_type=JSON)


@router.post("/jsonldContexts")
async def add_context(request: Request) -> Response:
    tenant_of(request)
    check_params(request, ())
    raw = await request.body()
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise InvalidRequest(f"the body is not JSON: {e}") from e
    stored = service_of(request).contexts.host(doc)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/jsonldContexts/{stored.local_id}"})


@router.delete("/jsonldContexts/{ident:path}")
async def delete_context(ident: str, request: Request) -> Response:
    tenant_of(request)
    check_params(request, ("reload",))
    reload = request.query_params.get("reload")
    if reload not in (None, "true", "false"):
        raise BadRequestData("reload must be true or false")
    service_of(request).contexts.delete(unquote(ident), reload=reload == "true")
    return Response(status_code=204)
