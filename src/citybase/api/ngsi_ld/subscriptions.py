"""Routes of /subscriptions (clauses 6.10 to 6.11): create, query, retrieve, update, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import Router, begin, begin_with_body, int_param, no_content
from citybase.api.ngsi_ld.entities import pagination_links
from citybase.context.errors import BadRequestData
from citybase.context.model import is_uri
from citybase.context.subscriptions import unparse

router = Router()


def _check(sid: str) -> None:
    if not is_uri(sid):
        raise BadRequestData(f"subscription id {sid!r} is not a URI")


@router.post("/subscriptions")
async def create_subscription(request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    sid = call.service.subscriptions.create(call.tenant, body, call.context, call.ctx)
    return no_content(call, 201, {"Location": f"/ngsi-ld/v1/subscriptions/{sid}"})


@router.get("/subscriptions")
async def query_subscriptions(request: Request) -> Response:
    call = begin(request, params=("limit", "offset", "count", "local"))
    limit = int_param(call, "limit", 20) or 0
    offset = int_param(call, "offset", 0) or 0
    subs = call.service.subscriptions.all(call.tenant)
    items = [unparse(s, call.ctx) for s in subs[offset : offset + limit]]
    headers = {"NGSILD-Results-Count": str(len(subs))} if call.param("count") == "true" else {}
    links = pagination_links(request, len(subs), limit, offset)
    resp = call.respond(items, headers=headers)
    if links:
        resp.headers["Link"] = ",".join(links)
    return resp


@router.get("/subscriptions/{sid}")
async def retrieve_subscription(sid: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    _check(sid)
    return call.respond(unparse(call.service.subscriptions.get(call.tenant, sid), call.ctx))


@router.patch("/subscriptions/{sid}")
async def update_subscription(sid: str, request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",), merge=True)
    _check(sid)
    call.service.subscriptions.update(call.tenant, sid, body, call.context, call.ctx)
    return no_content(call)


@router.delete("/subscriptions/{sid}")
async def delete_subscription(sid: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    _check(sid)
    call.service.subscriptions.delete(call.tenant, sid)
    return no_content(call)
