"""NGSI-LD entities in their stored form, and the checks an input must pass to become one.

Stored form: names (entity types, attribute and sub-attribute names) expanded to IRIs, so the same
entity reads the same whatever @context wrote it; core members (`type`, `value`, `object`,
`observedAt`...) kept under their core-context names, which are fixed (the core is @protected).

    {"id": "urn:ngsi-ld:Building:1", "type": ["https://.../Building"], "scope": [...],
     "createdAt": "...", "modifiedAt": "...",
     "attrs": {"https://.../name": [{"type": "Property", "value": "x", ...}, ...]}}
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from citybase.context.errors import BadRequestData, InvalidRequest
from citybase.context.jsonld import ActiveContext

Entity = dict[str, Any]
Instance = dict[str, Any]

ATTRIBUTE_TYPES = frozenset(
    {
        "Property",
        "Relationship",
        "GeoProperty",
        "LanguageProperty",
        "JsonProperty",
        "VocabProperty",
        "ListProperty",
        "ListRelationship",
    }
)
#: The member that carries each attribute type's content.
CONTENT = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "JsonProperty": "json",
    "VocabProperty": "vocab",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
ATTR_CORE = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "json",
        "vocab",
        "valueList",
        "objectList",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
        "previousValue",
        "previousObject",
        "previousLanguageMap",
        "previousJson",
        "previousVocab",
        "previousValueList",
        "previousObjectList",
    }
)
ENTITY_CORE = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"})
SYSTEM = ("createdAt", "modifiedAt", "deletedAt")
GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
NULL = "urn:ngsi-ld:null"
_FORBIDDEN = re.compile(r"[<>\"'=;()\s]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"]*$")
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
GEO_CORE = frozenset(
    {LOCATION, "https://uri.etsi.org/ngsi-ld/observationSpace", "https://uri.etsi.org/ngsi-ld/operationSpace"}
)


def now_iso() -> str:
    """The current time as NGSI-LD writes it (UTC, milliseconds, 'Z')."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and _URI.match(value) is not None


def parse_time(value: Any, what: str) -> datetime:
    """An ISO 8601 date-time (the API's DateTime), as an aware UTC datetime; else BadRequestData."""
    if not isinstance(value, str):
        raise BadRequestData(f"{what} must be a DateTime string")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise BadRequestData(f"{what} {value!r} is not an ISO 8601 DateTime") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def check_name(name: str) -> None:
    if not name or _FORBIDDEN.search(name) or name.startswith("@"):
        raise BadRequestData(f"attribute name {name!r} contains characters NGSI-LD forbids")


def expand_types(value: Any, ctx: ActiveContext) -> list[str]:
    """The expanded type(s) of an entity, from a name or a list of names."""
    types = value if isinstance(value, list) else [value]
    if not types or not all(isinstance(t, str) and t for t in types):
        raise BadRequestData("entity type must be a non-empty string or an array of them")
    for t in types:
        check_name(t)
    out: list[str] = []
    for t in types:
        iri = ctx.expand(t)
        if iri.startswith("@") or ":" not in iri:
            raise BadRequestData(f"entity type {t!r} does not expand to an IRI")
        if iri not in out:
            out.append(iri)
    return out


def parse_entity(
    body: Any,
    ctx: ActiveContext,
    *,
    require_type: bool = True,
    require_id: bool = True,
    temporal: bool = False,
    allow_null: bool = False,
) -> Entity:
    """An input entity (normalized or concise) to the stored form, checking it on the way."""
    if not isinstance(body, dict):
        raise BadRequestData("an entity must be a JSON object")
    if not any(k != "@context" for k in body):
        raise InvalidRequest("the entity is empty")
    ent: Entity = {}
    eid = body.get("id", body.get("@id"))
    if eid is None:
        if require_id:
            raise BadRequestData("entity id is missing")
    elif not is_uri(eid):
        raise BadRequestData(f"entity id {eid!r} is not a URI")
    else:
        ent["id"] = eid
    etype = body.get("type", body.get("@type"))
    if etype is None:
        if require_type:
            raise BadRequestData("entity type is missing")
    else:
        ent["type"] = expand_types(etype, ctx)
    if "scope" in body:
        ent["scope"] = parse_scope(body["scope"])
    ent["attrs"] = parse_attributes(body, ctx, temporal=temporal, allow_null=allow_null)
    return ent


def parse_scope(value: Any) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for s in scopes:
        if not isinstance(s, str) or not re.match(r"^/?[\w\-]+(/[\w\-]+)*$|^/$", s):
            raise BadRequestData(f"scope {s!r} is not a valid scope")
    return list(scopes)


def parse_attributes(
    body: dict[str, Any], ctx: ActiveContext, *, allow_null: bool = False, temporal: bool = False
) -> dict[str, list[Instance]]:
    """The attributes of an entity or fragment, by expanded name; each a list of instances."""
    attrs: dict[str, list[Instance]] = {}
    for key, value in body.items():
        if key in ENTITY_CORE or key in ("@id", "@type"):
            continue
        check_name(key)
        iri = ctx.expand(key)
        attrs[iri] = parse_attribute(key, value, ctx, allow_null=allow_null, temporal=temporal)
        if iri in GEO_CORE:
            for inst in attrs[iri]:
                if inst.get("type") not in ("GeoProperty",) and inst.get("value") != NULL:
                    raise BadRequestData(f"{key} must be a GeoProperty")
    return attrs


def parse_attribute(
    name: str, value: Any, ctx: ActiveContext, *, allow_null: bool = False, temporal: bool = False
) -> list[Instance]:
    """One attribute's instances (a list for multi-attributes), normalized."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and _looks_like_instance(v) for v in value)
    ):
        instances = [parse_instance(name, v, ctx, allow_null=allow_null) for v in value]
        ids = [i.get("datasetId") for i in instances]
        if not temporal and len(set(map(str, ids))) != len(ids):
            raise BadRequestData(f"attribute {name} has two instances with the same datasetId")
        return instances
    return [parse_instance(name, value, ctx, allow_null=allow_null)]


def _looks_like_instance(v: dict[str, Any]) -> bool:
    return ("type" in v and v["type"] in ATTRIBUTE_TYPES) or any(k in v for k in CONTENT.values())


def parse_instance(
    name: str, value: Any, ctx: ActiveContext, *, allow_null: bool = False, sub: bool = False
) -> Instance:
    """One attribute instance; concise values (no `type`) get their type from their content."""
    if not isinstance(value, dict):
        if value is None:
            raise BadRequestData(f"attribute {name} has a null value")
        if value == NULL and allow_null:
            return {"type": "Property", "value": NULL}
        return {"type": "Property", "value": value}
    atype = value.get("type")
    if atype is None or atype not in ATTRIBUTE_TYPES:
        if (atype in GEOMETRY_TYPES and "coordinates" in value) or atype == "GeometryCollection":
            return {"type": "GeoProperty", "value": _check_geometry(name, value)}
        if atype is not None and not any(k in value for k in CONTENT.values()):
            # A JSON object value given concisely that happens to have a "type" member.
            return {"type": "Property", "value": value}
        if atype is not None:
            raise BadRequestData(f"attribute {name} has an unknown type {atype!r}")
        atype = next((t for t, k in CONTENT.items() if k in value), None)
        if atype is None:
            return {"type": "Property", "value": value}
        if (
            atype == "Property"
            and isinstance(value.get("value"), dict)
            and value["value"].get("type") in GEOMETRY_TYPES
        ):
            atype = "GeoProperty"
    key = CONTENT[atype]
    if key not in value:
        raise BadRequestData(f"attribute {name} of type {atype} has no {key}")
    content = value[key]
    inst: Instance = {"type": atype}
    if content is None:
        raise BadRequestData(f"attribute {name} has a null {key}")
    if content == NULL and allow_null:
        inst[key] = NULL
    elif atype == "Relationship":
        objs = content if isinstance(content, list) else [content]
        if not objs or not all(is_uri(o) for o in objs):
            raise BadRequestData(f"relationship {name} must point to a URI")
        inst[key] = content
        if "objectType" in value:
            inst["objectType"] = value["objectType"]
    elif atype == "GeoProperty":
        inst[key] = _check_geometry(name, content)
    elif (
        atype == "LanguageProperty"
        and isinstance(content, dict)
        and content.get("@none") == NULL
        and allow_null
    ):
        inst[key] = NULL
    elif atype == "LanguageProperty":
        if not isinstance(content, dict) or not all(isinstance(v, str | list) for v in content.values()):
            raise BadRequestData(f"languageMap of {name} must map language tags to strings")
        inst[key] = content
    elif atype == "VocabProperty":
        vocabs = content if isinstance(content, list) else [content]
        if not all(isinstance(v, str) for v in vocabs):
            raise BadRequestData(f"vocab of {name} must be a string or an array of strings")
        expanded = [ctx.expand(v) for v in vocabs]
        inst[key] = expanded if isinstance(content, list) else expanded[0]
    elif atype == "ListProperty":
        if not isinstance(content, list):
            raise BadRequestData(f"valueList of {name} must be an array")
        inst[key] = content
    elif atype == "ListRelationship":
        if not isinstance(content, list):
            raise BadRequestData(f"objectList of {name} must be an array")
        objs2 = [o.get("object") if isinstance(o, dict) else o for o in content]
        if not all(is_uri(o) for o in objs2):
            raise BadRequestData(f"objectList of {name} must hold URIs")
        inst[key] = objs2
    else:
        inst[key] = content
    for k, v in value.items():
        if k in ("type", key):
            continue
        if k == "observedAt":
            parse_time(v, f"observedAt of {name}")
            inst[k] = v
        elif k == "datasetId":
            if not is_uri(v):
                raise BadRequestData(f"datasetId of {name} must be a URI")
            if not sub:
                inst[k] = v
        elif k == "unitCode":
            if not isinstance(v, str):
                raise BadRequestData(f"unitCode of {name} must be a string")
            inst[k] = v
        elif k in ("createdAt", "modifiedAt", "deletedAt", "instanceId"):
            continue  # system members are the broker's to write
        elif k in ATTR_CORE:
            if k == "objectType":
                continue
            inst[k] = v
        elif k == "@context":
            continue
        else:
            check_name(k)
            inst[ctx.expand(k)] = parse_instance(k, v, ctx, allow_null=allow_null, sub=True)
    return inst


def _check_geometry(name: str, g: Any) -> dict[str, Any]:
    from citybase.context.geo import to_shape

    if g == NULL:
        return g  # type: ignore[no-any-return]
    if not isinstance(g, dict) or g.get("type") not in GEOMETRY_TYPES:
        raise BadRequestData(f"{name} is not a GeoJSON geometry")
    try:
        to_shape(g)
    except Exception as e:
        raise BadRequestData(f"{name} is not a valid GeoJSON geometry: {e}") from e
    return g


def stamp(instance: Instance, when: str, created: str | None = None) -> Instance:
    """Set an instance's system times (and its sub-attributes')."""
    instance["createdAt"] = created or when
    instance["modifiedAt"] = when
    for k, v in instance.items():
        if k not in ATTR_CORE and isinstance(v, dict):
            v.setdefault("createdAt", created or when)
            v["modifiedAt"] = when
    return instance


def find_instance(instances: list[Instance], dataset_id: str | None) -> int | None:
    for i, inst in enumerate(instances):
        if inst.get("datasetId") == dataset_id:
            return i
    return None
