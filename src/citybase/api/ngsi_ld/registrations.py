"""Routes of /csourceRegistrations and /csourceSubscriptions: kept, listed and served, but not yet
used to forward queries (distributed operations are not implemented; docs/ngsi-ld.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import Router, begin, begin_with_body, no_content
from citybase.context.errors import AlreadyExists, BadRequestData, ResourceNotFound
from citybase.context.model import is_uri

router = Router()


def _registry(request: Request) -> dict[str, dict[str, Any]]:
    state = request.app.state
    if not hasattr(state, "ngsi_csr"):
        state.ngsi_csr = {}
    regs: dict[str, dict[str, Any]] = state.ngsi_csr
    return regs


@router.post("/csourceRegistrations")
async def create_registration(request: Request) -> Response:
    call, body = await begin_with_body(request, params=("local",))
    if not isinstance(body, dict) or body.get("type") != "ContextSourceRegistration":
        raise BadRequestData("a registration must have type ContextSourceRegistration")
    if not isinstance(body.get("information"), list) or not is_uri(body.get("endpoint")):
        raise BadRequestData("a registration needs information and an endpoint URI")
    rid = body.get("id") or f"urn:ngsi-ld:ContextSourceRegistration:{len(_registry(request)) + 1}"
    key = f"{call.tenant} {rid}"
    if key in _registry(request):
        raise AlreadyExists(f"registration {rid} already exists")
    _registry(request)[key] = {k: v for k, v in body.items() if k != "@context"} | {"id": rid}
    return no_content(call, 201, {"Location": f"/ngsi-ld/v1/csourceRegistrations/{rid}"})


@router.get("/csourceRegistrations")
async def query_registrations(request: Request) -> Response:
    call = begin(
        request,
        params=(
            "id",
            "type",
            "idPattern",
            "attrs",
            "q",
            "csf",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
            "timeproperty",
            "timerel",
            "timeAt",
            "endTimeAt",
            "limit",
            "offset",
            "count",
            "local",
            "options",
        ),
    )
    ids = set((call.param("id") or "").split(",")) - {""}
    out = [
        r
        for k, r in _registry(request).items()
        if k.startswith(call.tenant + " ") and (not ids or r["id"] in ids)
    ]
    return call.respond(out)


@router.get("/csourceRegistrations/{rid}")
async def retrieve_registration(rid: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    reg = _registry(request).get(f"{call.tenant} {rid}")
    if reg is None:
        raise ResourceNotFound(f"no registration {rid}")
    return call.respond(reg)


@router.delete("/csourceRegistrations/{rid}")
async def delete_registration(rid: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    if _registry(request).pop(f"{call.tenant} {rid}", None) is None:
        raise ResourceNotFound(f"no registration {rid}")
    return no_content(call)


@router.get("/csourceSubscriptions")
async def query_registration_subscriptions(request: Request) -> Response:
    call = begin(request, params=("limit", "offset", "count", "local"))
    return call.respond([])
