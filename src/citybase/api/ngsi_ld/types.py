"""Routes of /types and /attributes (clause 6.25 to 6.28): what entity types and attributes exist."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citybase.api.ngsi_ld.common import Call, Router, begin
from citybase.context.errors import BadRequestData, ResourceNotFound
from citybase.context.model import Entity

router = Router()


def _details(call: Call) -> bool:
    d = call.param("details")
    if d not in (None, "true", "false"):
        raise BadRequestData("details must be true or false")
    return d == "true"


def _all(call: Call) -> list[Entity]:
    return list(call.service.store.scan(call.tenant))


@router.get("/types")
async def entity_types(request: Request) -> Response:
    call = begin(request, params=("details", "local"))
    ents = _all(call)
    attrs_by_type: dict[str, list[str]] = {}
    for e in ents:
        for t in e["type"]:
            names = attrs_by_type.setdefault(t, [])
            for a in e["attrs"]:
                if a not in names:
                    names.append(a)
    c = call.ctx.compact
    if _details(call):
        body: Any = [
            {"id": t, "type": "EntityType", "typeName": c(t), "attributeNames": [c(a) for a in attrs]}
            for t, attrs in sorted(attrs_by_type.items())
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": sorted(c(t) for t in attrs_by_type),
        }
    return call.respond(body)


@router.get("/types/{type_name:path}")
async def entity_type(type_name: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    iri = call.ctx.expand(type_name)
    ents = [e for e in _all(call) if iri in e["type"]]
    if not ents:
        raise ResourceNotFound(f"no entity of type {type_name}")
    details: dict[str, list[str]] = {}
    for e in ents:
        for a, insts in e["attrs"].items():
            kinds = details.setdefault(a, [])
            for i in insts:
                if i.get("type") not in kinds:
                    kinds.append(i.get("type", "Property"))
    c = call.ctx.compact
    body = {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": c(iri),
        "entityCount": len(ents),
        "attributeDetails": [
            {"id": a, "type": "Attribute", "attributeName": c(a), "attributeTypes": k}
            for a, k in details.items()
        ],
    }
    return call.respond(body)


def _attribute_index(call: Call) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for e in _all(call):
        for a, insts in e["attrs"].items():
            info = index.setdefault(a, {"count": 0, "kinds": [], "types": []})
            info["count"] += len(insts)
            for i in insts:
                if i.get("type") not in info["kinds"]:
                    info["kinds"].append(i.get("type", "Property"))
            for t in e["type"]:
                if t not in info["types"]:
                    info["types"].append(t)
    return index


@router.get("/attributes")
async def attributes(request: Request) -> Response:
    call = begin(request, params=("details", "local"))
    index = _attribute_index(call)
    c = call.ctx.compact
    if _details(call):
        body: Any = [
            {"id": a, "type": "Attribute", "attributeName": c(a), "typeNames": [c(t) for t in info["types"]]}
            for a, info in sorted(index.items())
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": sorted(c(a) for a in index),
        }
    return call.respond(body)


@router.get("/attributes/{attr:path}")
async def attribute(attr: str, request: Request) -> Response:
    call = begin(request, params=("local",))
    iri = call.ctx.expand(attr)
    info = _attribute_index(call).get(iri)
    if info is None:
        raise ResourceNotFound(f"no attribute {attr}")
    c = call.ctx.compact
    return call.respond(
        {
            "id": iri,
            "type": "Attribute",
            "attributeName": c(iri),
            "attributeCount": info["count"],
            "attributeTypes": info["kinds"],
            "typeNames": [c(t) for t in info["types"]],
        }
    )
