"""The fused entities as NGSI-LD entities: a read-only provider for the context API.

An entity of type `person` declared with `ngsi_type: Person` is `urn:ngsi-ld:Person:<entity id>`;
its golden fields are Properties (each with a `sourceRecord` sub-property: `<dataset>|<record id>`),
its located records give a `location` GeoProperty, and its links are Relationships to the linked
entities' URNs (`livesIn`, `registeredAt`...). Everything is what `cb.fusion.entity(who, id)` shows
the reader, so grants, projections and masks apply exactly as in the platform's own API.

Types and attribute names expand with the core @context (the default vocabulary): `type=Person`
finds them without a Link header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from citybase.context.contexts import ContextRegistry
from citybase.context.model import ENTITY_CORE, Entity, parse_entity
from citybase.context.query import EntityQuery
from citybase.errors import NotFound
from citybase.fusion.declaration import EntityTypeSpec
from citybase.fusion.profile import EntityProfile
from citybase.fusion.service import resolved_at

if TYPE_CHECKING:
    from citybase.fusion.service import FusionService

_CORE = ContextRegistry().active(None)
CHUNK = 500  # entities read together (one read per dataset)
_RESERVED = ENTITY_CORE | {"location", "observationSpace", "operationSpace"}


def to_ngsi(et: EntityTypeSpec, p: EntityProfile, ngsi_of: dict[str, str]) -> dict[str, Any]:
    """A profile as a normalized NGSI-LD entity (compacted with the core @context)."""
    doc: dict[str, Any] = {"id": p.ngsi_id, "type": et.ngsi}
    for name, g in p.golden.items():
        if name in _RESERVED:
            continue
        doc[name] = {
            "type": "Property",
            "value": g.value,
            "sourceRecord": {"type": "Property", "value": f"{g.dataset}|{g.record}"},
        }
    if p.location is not None:
        doc["location"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [p.location.lon, p.location.lat]},
        }
    rels: dict[str, list[dict[str, Any]]] = {}
    for link in p.links:
        if link.direction != "out":
            continue
        inst: dict[str, Any] = {"type": "Relationship", "object": link.ngsi_id}
        if link.entity_type in ngsi_of:
            inst["objectType"] = ngsi_of[link.entity_type]
        got = rels.setdefault(link.relation, [])
        if got:  # the best-supported link is the default instance; others get their own datasetId
            inst["datasetId"] = f"urn:ngsi-ld:Dataset:{link.entity}"
        got.append(inst)
    for rel, insts in rels.items():
        doc[rel] = insts[0] if len(insts) == 1 else insts
    return doc


class FusionProvider:
    """Serves `cb.fusion`'s entities by URN and by type, for the request's principal."""

    def __init__(self, fusion: FusionService) -> None:
        self.fusion = fusion

    def _types(self) -> dict[str, EntityTypeSpec]:
        """Expanded NGSI-LD type -> the declared entity type."""
        return {_CORE.expand(t.ngsi): t for t in self.fusion.declaration.types}

    def serves(self, types: list[list[str]] | None) -> bool:
        mine = self._types()
        if not mine:
            return False
        return types is None or any(set(conj) <= {t} for conj in types for t in mine)

    def _entity(self, et: EntityTypeSpec, p: EntityProfile) -> Entity:
        ngsi_of = {t.entity_type: t.ngsi for t in self.fusion.declaration.types}
        ent = parse_entity(to_ngsi(et, p, ngsi_of), _CORE)
        when = resolved_at(p.resolved_at)
        ent["createdAt"] = ent["modifiedAt"] = when
        for insts in ent["attrs"].values():
            for i in insts:
                i.setdefault("createdAt", when)
                i.setdefault("modifiedAt", when)
        return ent

    def get(self, viewer: Any, entity_id: str) -> Entity | None:
        if viewer is None:
            return None
        parts = entity_id.split(":", 3)
        if len(parts) != 4 or parts[:2] != ["urn", "ngsi-ld"]:
            return None
        et = next((t for t in self.fusion.declaration.types if t.ngsi == parts[2]), None)
        if et is None:
            return None
        try:
            p = self.fusion.entity(viewer, parts[3])
        except NotFound:
            return None
        return self._entity(et, p) if p.type == et.entity_type else None

    def query(
        self, viewer: Any, query: EntityQuery, offset: int, limit: int | None
    ) -> tuple[list[Entity], int]:
        if viewer is None:
            return [], 0
        wanted = [
            et
            for iri, et in self._types().items()
            if query.types is None or any(set(conj) <= {iri} for conj in query.types)
        ]
        candidates = [
            (et, eid, f"urn:ngsi-ld:{et.ngsi}:{eid}")
            for et in wanted
            for eid in self.fusion.visible_ids(viewer, et.entity_type)
        ]
        candidates.sort(key=lambda c: c[2])
        if query.ids is not None:
            ids = set(query.ids)
            candidates = [c for c in candidates if c[2] in ids]
        if query.id_pattern is not None:
            pattern = query.id_pattern
            candidates = [c for c in candidates if pattern.search(c[2])]
        end = None if limit is None else offset + limit
        if not (query.q or query.geo or query.attrs or query.scope_q):
            page = [e for e in self._built(viewer, candidates[offset:end])]
            return page, len(candidates)
        # the rest of the query needs the entities themselves: build each, keep the matches
        matched = [e for e in self._built(viewer, candidates) if query.matches(e)]
        return matched[offset:end], len(matched)

    def _built(self, viewer: Any, candidates: list[tuple[EntityTypeSpec, str, str]]) -> Iterator[Entity]:
        """The candidates' entities, in order, read a chunk per type at a time."""
        for i in range(0, len(candidates), CHUNK):
            chunk = candidates[i : i + CHUNK]
            got: dict[str, EntityProfile] = {}
            for name in dict.fromkeys(et.entity_type for et, _, _ in chunk):
                got |= self.fusion.profiles(viewer, name, [e for et, e, _ in chunk if et.entity_type == name])
            for et, eid, _ in chunk:
                if eid in got:
                    yield self._entity(et, got[eid])
