"""Query entities (clause 5.7.2): type expressions, ids, idPattern, q, scopeQ, geo-queries, attrs,
then pagination. The store prunes by type, id and location box; this module decides the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from citybase.context.broker import scope_matches
from citybase.context.errors import BadRequestData
from citybase.context.geo import GeoQuery, to_shape
from citybase.context.jsonld import ActiveContext
from citybase.context.model import Entity
from citybase.context.qlang import Predicate
from citybase.context.store import EntityStore


@dataclass
class EntityQuery:
    """A parsed query; names already expanded."""

    types: list[list[str]] | None = None  # OR of ANDs of expanded types
    ids: list[str] | None = None
    id_pattern: re.Pattern[str] | None = None
    q: Predicate | None = None
    geo: GeoQuery | None = None
    geoproperty: str | None = None  # expanded
    scope_q: str | None = None
    attrs: set[str] | None = None  # entities must have at least one of these

    def matches(self, e: Entity) -> bool:
        if self.types is not None and not any(all(t in e["type"] for t in conj) for conj in self.types):
            return False
        if self.ids is not None and e["id"] not in self.ids:
            return False
        if self.id_pattern is not None and self.id_pattern.search(e["id"]) is None:
            return False
        if self.attrs is not None and not any(a in e["attrs"] for a in self.attrs):
            return False
        if self.scope_q is not None and not scope_matches(e.get("scope"), self.scope_q):
            return False
        if self.q is not None and not self.q(e):
            return False
        return not (self.geo is not None and not _geo_match(e, self.geo, self.geoproperty))


def _geo_match(e: Entity, geo: GeoQuery, prop: str | None) -> bool:
    for inst in e["attrs"].get(prop or "https://uri.etsi.org/ngsi-ld/location", []):
        try:
            if geo.matches(to_shape(inst["value"])):
                return True
        except Exception:
            continue
    return False


def parse_types(expr: str, ctx: ActiveContext) -> list[list[str]]:
    """`A,B` or `A|B` (either), `A;B` (both), parentheses flattened: an OR of ANDs."""
    text = expr.replace("(", "").replace(")", "")
    out: list[list[str]] = []
    for alt in re.split(r"[,|]", text):
        conj = [ctx.expand(t.strip()) for t in alt.split(";") if t.strip()]
        if not conj:
            raise BadRequestData(f"invalid type expression {expr!r}")
        out.append(conj)
    return out


def parse_id_pattern(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise BadRequestData(f"idPattern {text!r} is not a valid regular expression") from e


def run(store: EntityStore, tenant: str, query: EntityQuery) -> list[Entity]:
    """All matching entities in id order."""
    prefilter: list[str] | None = None
    if query.types is not None and all(len(c) == 1 for c in query.types):
        prefilter = [c[0] for c in query.types]
    bbox = None
    if query.geo is not None and (query.geoproperty in (None, "https://uri.etsi.org/ngsi-ld/location")):
        bbox = query.geo.bbox()
    out = []
    for e in store.scan(tenant, types=prefilter, ids=query.ids, bbox=bbox):
        if query.matches(e):
            out.append(e)
    return out


def page(items: list[Any], limit: int, offset: int) -> list[Any]:
    return items[offset : offset + limit]


def order(entities: list[Entity], spec: str, ctx: ActiveContext) -> list[Entity]:
    """orderBy (clause 4.24): `name;desc,type` - attributes, sub-attributes (`attr.sub`), members
    (`attr.createdAt`), id, type, createdAt, modifiedAt; entities without the key come last."""
    keys: list[tuple[list[str], bool]] = []
    for part in spec.split(","):
        path, _, direction = part.partition(";")
        if direction not in ("", "asc", "desc") or not path:
            raise BadRequestData(f"orderBy {part!r} is not attribute[;asc|;desc]")
        names = path.split(".")
        head = names[0] if names[0] in ("id", "type", "createdAt", "modifiedAt") else ctx.expand(names[0])
        rest = [
            n
            if n in ("createdAt", "modifiedAt", "observedAt", "value", "object", "unitCode")
            else ctx.expand(n)
            for n in names[1:]
        ]
        keys.append(([head, *rest], direction == "desc"))
    out = list(entities)
    for steps, desc in reversed(keys):
        present = [e for e in out if _key(e, steps) is not None]
        missing = [e for e in out if _key(e, steps) is None]

        def sort_key(e: Entity, p: list[str] = steps) -> tuple[int, Any]:
            return _sortable(_key(e, p))

        present.sort(key=sort_key, reverse=desc)
        out = present + missing
    return out


def _key(e: Entity, path: list[str]) -> Any:
    head = path[0]
    if head in ("id", "createdAt", "modifiedAt") and len(path) == 1:
        return e.get(head)
    if head == "type" and len(path) == 1:
        return e["type"][0] if e["type"] else None
    insts = e["attrs"].get(head)
    if not insts:
        return None
    node: Any = insts[0]
    for step in path[1:]:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    if isinstance(node, dict):
        node = node.get("value", node.get("object"))
    return node


def _sortable(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, int | float):
        return (0, v)
    return (1, str(v))
