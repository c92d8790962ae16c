"""Context operations (clause 5.6): create, update, append, merge, replace and delete entities and
attributes, over the entity store. Every change is announced to listeners (history, subscriptions).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from citybase.context.errors import AlreadyExists, BadRequestData, ResourceNotFound
from citybase.context.model import (
    ATTR_CORE,
    NULL,
    Entity,
    Instance,
    find_instance,
    now_iso,
)
from citybase.context.store import EntityStore


@dataclass
class Change:
    """What one operation did to one entity; `before` is None on create, `after` None on delete."""

    tenant: str
    entity_id: str
    before: Entity | None
    after: Entity | None
    attrs: list[str] = field(default_factory=list)  # expanded names of attributes that changed
    deleted_attrs: list[str] = field(default_factory=list)


@dataclass
class UpdateResult:
    """Which attributes an update changed and which it did not (with the reason)."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


Listener = Callable[[list[Change]], None]


class Broker:
    """The NGSI-LD context operations of one platform."""

    def __init__(self, store: EntityStore) -> None:
        self.store = store
        self.listeners: list[Listener] = []

    def _announce(self, changes: list[Change]) -> None:
        for listener in self.listeners:
            listener(changes)

    # -- entities -----------------------------------------------------------------------------

    def get(self, tenant: str, entity_id: str) -> Entity:
        ent = self.store.get(tenant, entity_id)
        if ent is None:
            raise ResourceNotFound(f"entity {entity_id} not found", entity_id=entity_id)
        return ent

    def create(self, tenant: str, entity: Entity, *, announce: bool = True) -> Change:
        when = now_iso()
        ent = _new_entity(entity, when)
        with self.store.write_lock:
            if not self.store.insert(tenant, ent):
                raise AlreadyExists(f"entity {ent['id']} already exists", entity_id=ent["id"])
        change = Change(tenant, ent["id"], None, ent, list(ent["attrs"]))
        if announce:
            self._announce([change])
        return change

    def delete(self, tenant: str, entity_id: str, *, announce: bool = True) -> Change:
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            self.store.remove(tenant, [entity_id])
        change = Change(tenant, entity_id, before, None, [], list(before["attrs"]))
        if announce:
            self._announce([change])
        return change

    def replace(self, tenant: str, entity_id: str, entity: Entity, *, announce: bool = True) -> Change:
        """PUT /entities/{id}: the entity becomes the given one (createdAt kept)."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            when = now_iso()
            ent = _new_entity({**entity, "id": entity_id, "type": entity.get("type", before["type"])}, when)
            ent["createdAt"] = before["createdAt"]
            self.store.put(tenant, ent)
        change = Change(
            tenant,
            entity_id,
            before,
            ent,
            list(ent["attrs"]),
            [a for a in before["attrs"] if a not in ent["attrs"]],
        )
        if announce:
            self._announce([change])
        return change

    def upsert(
        self, tenant: str, entity: Entity, *, replace: bool, announce: bool = True
    ) -> tuple[Change, bool]:
        """Batch upsert: create, or replace (`replace`) / append to (not `replace`) an existing one."""
        with self.store.write_lock:
            existing = self.store.get(tenant, entity["id"])
            if existing is None:
                return self.create(tenant, entity, announce=announce), True
            if replace:
                return self.replace(tenant, entity["id"], entity, announce=announce), False
            change, _ = self.append(tenant, entity["id"], entity, overwrite=True, announce=announce)
            return change, False

    # -- attributes ---------------------------------------------------------------------------

    def append(
        self, tenant: str, entity_id: str, fragment: Entity, *, overwrite: bool = True, announce: bool = True
    ) -> tuple[Change, UpdateResult]:
        """POST /entities/{id}/attrs: add attributes, replacing same-dataset instances unless
        `noOverwrite`; types in the fragment are added to the entity's."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = _shallow(before)
            when = now_iso()
            result = UpdateResult()
            for t in fragment.get("type", []):
                if t not in ent["type"]:
                    ent["type"].append(t)
            if "scope" in fragment:
                ent["scope"] = (
                    list(fragment["scope"])
                    if overwrite
                    else _merge_scope(ent.get("scope"), fragment["scope"])
                )
            for iri, instances in fragment.get("attrs", {}).items():
                current = ent["attrs"][iri] = list(ent["attrs"].get(iri, []))
                changed = False
                for inst in instances:
                    i = find_instance(current, inst.get("datasetId"))
                    if i is None:
                        current.append(_stamped(inst, when))
                        changed = True
                    elif overwrite:
                        current[i] = _stamped(inst, when, current[i].get("createdAt"))
                        changed = True
                if changed:
                    result.updated.append(iri)
                else:
                    result.not_updated.append((iri, "attribute exists and noOverwrite was given"))
            ent["modifiedAt"] = when
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, result.updated)
        if announce and result.updated:
            self._announce([change])
        return change, result

    def update(
        self, tenant: str, entity_id: str, fragment: Entity, *, announce: bool = True
    ) -> tuple[Change, UpdateResult]:
        """PATCH /entities/{id}/attrs: replace attribute instances (new ones are added, as the ETSI
        suite expects of 1.9); types are added; a scope replaces an existing scope only."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = _shallow(before)
            when = now_iso()
            result = UpdateResult()
            for t in fragment.get("type", []):
                if t not in ent["type"]:
                    ent["type"].append(t)
            if "scope" in fragment:
                if ent.get("scope"):
                    ent["scope"] = list(fragment["scope"])
                    result.updated.append("scope")
                else:
                    result.not_updated.append(("scope", "the entity has no scope to update"))
            for iri, instances in fragment.get("attrs", {}).items():
                current = ent["attrs"][iri] = list(ent["attrs"].get(iri, []))
                for inst in instances:
                    i = find_instance(current, inst.get("datasetId"))
                    if _is_null(inst):
                        if i is not None:
                            current.pop(i)
                    elif i is None:
                        current.append(_stamped(inst, when))
                    else:
                        current[i] = _stamped(inst, when, current[i].get("createdAt"))
                if not current:
                    del ent["attrs"][iri]
                result.updated.append(iri)
            ent["modifiedAt"] = when
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, [a for a in result.updated if a != "scope"])
        if announce and result.updated:
            self._announce([change])
        return change, result

    def partial_update(
        self, tenant: str, entity_id: str, attr: str, inst: dict[str, Any], *, announce: bool = True
    ) -> Change:
        """PATCH /entities/{id}/attrs/{attr}: merge the given members into one instance."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = copy.deepcopy(before)
            current = ent["attrs"].get(attr)
            if current is None:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            i = find_instance(current, inst.get("datasetId"))
            if i is None:
                raise ResourceNotFound(f"attribute {attr} has no instance with that datasetId")
            when = now_iso()
            target = current[i]
            if _is_null(inst):
                current.pop(i)
                if not current:
                    del ent["attrs"][attr]
            else:
                if "type" in inst and inst["type"] != target.get("type"):
                    raise BadRequestData(f"attribute {attr} is a {target.get('type')}, not a {inst['type']}")
                _merge_instance(target, inst)
                target["modifiedAt"] = when
            ent["modifiedAt"] = when
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, [attr])
        if announce:
            self._announce([change])
        return change

    def replace_attribute(
        self, tenant: str, entity_id: str, attr: str, instances: list[Instance], *, announce: bool = True
    ) -> Change:
        """PUT /entities/{id}/attrs/{attr}: the instance with the same datasetId is replaced."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = copy.deepcopy(before)
            current = ent["attrs"].get(attr)
            if current is None:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            when = now_iso()
            for inst in instances:
                i = find_instance(current, inst.get("datasetId"))
                if i is None:
                    raise ResourceNotFound(f"attribute {attr} has no instance with that datasetId")
                current[i] = _stamped(inst, when, current[i].get("createdAt"))
            ent["modifiedAt"] = when
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, [attr])
        if announce:
            self._announce([change])
        return change

    def delete_attribute(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        *,
        dataset_id: str | None = None,
        delete_all: bool = False,
        announce: bool = True,
    ) -> Change:
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = copy.deepcopy(before)
            current = ent["attrs"].get(attr)
            if attr == "scope" and current is None:
                if not ent.get("scope"):
                    raise ResourceNotFound(f"entity {entity_id} has no scope")
                del ent["scope"]
                ent["modifiedAt"] = now_iso()
                self.store.put(tenant, ent)
                change = Change(tenant, entity_id, before, ent)
                if announce:
                    self._announce([change])
                return change
            if current is None:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            if delete_all:
                del ent["attrs"][attr]
            else:
                i = find_instance(current, dataset_id)
                if i is None:
                    raise ResourceNotFound(f"attribute {attr} has no instance with that datasetId")
                current.pop(i)
                if not current:
                    del ent["attrs"][attr]
            ent["modifiedAt"] = now_iso()
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, [], [attr])
        if announce:
            self._announce([change])
        return change

    def merge(self, tenant: str, entity_id: str, fragment: Entity, *, announce: bool = True) -> Change:
        """PATCH /entities/{id} (merge-patch, clause 5.6.17): add or merge attributes; an
        `urn:ngsi-ld:null` value deletes the attribute (instance)."""
        with self.store.write_lock:
            before = self.get(tenant, entity_id)
            ent = copy.deepcopy(before)
            when = now_iso()
            for t in fragment.get("type", []):
                if t not in ent["type"]:
                    ent["type"].append(t)
            if "scope" in fragment:
                ent["scope"] = fragment["scope"]
            changed: list[str] = []
            deleted: list[str] = []
            for iri, instances in fragment.get("attrs", {}).items():
                current = ent["attrs"].setdefault(iri, [])
                for inst in instances:
                    i = find_instance(current, inst.get("datasetId"))
                    if _is_null(inst):
                        if i is not None:
                            current.pop(i)
                            deleted.append(iri)
                        continue
                    if i is None:
                        current.append(_stamped(inst, when))
                    else:
                        target = current[i]
                        if inst.get("type") != target.get("type") and "type" in inst:
                            current[i] = _stamped(inst, when, target.get("createdAt"))
                        else:
                            _merge_instance(target, inst, null_deletes=True)
                            target["modifiedAt"] = when
                    changed.append(iri)
                if not current:
                    del ent["attrs"][iri]
            ent["modifiedAt"] = when
            self.store.put(tenant, ent)
        change = Change(tenant, entity_id, before, ent, changed, deleted)
        if announce:
            self._announce([change])
        return change

    def purge(self, tenant: str, types: list[str] | None, ids: list[str] | None) -> list[str]:
        with self.store.write_lock:
            befores = list(self.store.scan(tenant, types=types, ids=ids))
            self.store.remove(tenant, [b["id"] for b in befores])
        self._announce([Change(tenant, b["id"], b, None) for b in befores])
        return [b["id"] for b in befores]

    def announce(self, changes: list[Change]) -> None:
        """Tell listeners about changes made with `announce=False` (batches announce once)."""
        if changes:
            self._announce(changes)


def _shallow(entity: Entity) -> Entity:
    """A copy safe for operations that replace (never mutate) attribute instances."""
    return {**entity, "type": list(entity["type"]), "attrs": dict(entity["attrs"])}


def _is_null(inst: Instance) -> bool:
    return any(
        inst.get(k) == NULL
        for k in ("value", "object", "languageMap", "json", "vocab", "valueList", "objectList")
    )


def _merge_instance(target: Instance, inst: Instance, *, null_deletes: bool = False) -> None:
    for k, v in inst.items():
        if k in ("createdAt", "modifiedAt"):
            continue
        if null_deletes and (v == NULL or (isinstance(v, dict) and _is_null(v))):
            target.pop(k, None)
            continue
        if k not in ATTR_CORE and isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge_instance(target[k], v, null_deletes=null_deletes)
        elif k == "languageMap" and null_deletes and isinstance(target.get(k), dict) and isinstance(v, dict):
            target[k] = {**target[k], **v}
        else:
            target[k] = v


def _stamped(inst: Instance, when: str, created: str | None = None) -> Instance:
    out = dict(inst)
    out["createdAt"] = created or when
    out["modifiedAt"] = when
    for k, v in out.items():
        if k not in ATTR_CORE and isinstance(v, dict):
            out[k] = {**v, "createdAt": created or when, "modifiedAt": when}
    return out


def _new_entity(entity: Entity, when: str) -> Entity:
    if "type" not in entity or not entity["type"]:
        raise BadRequestData("entity type is missing")
    out: Entity = {"id": entity["id"], "type": list(entity["type"])}
    if entity.get("scope"):
        out["scope"] = entity["scope"]
    out["createdAt"] = when
    out["modifiedAt"] = when
    out["attrs"] = {k: [_stamped(i, when) for i in v] for k, v in entity.get("attrs", {}).items()}
    return out


def _merge_scope(old: list[str] | None, new: list[str]) -> list[str]:
    out = list(old or [])
    for s in new:
        if s not in out:
            out.append(s)
    return out


def scope_matches(scopes: list[str] | None, expr: str) -> bool:
    """scopeQ (clause 4.19): `/a/b` exact, `/a/+` one level, `/a/#` the subtree; `,` OR, `;` AND."""
    have = scopes or []
    for alternative in expr.split(","):
        if all(any(_scope_one(s, term.strip()) for s in have) for term in alternative.split(";")):
            return True
    return False


def _scope_one(scope: str, pattern: str) -> bool:
    if pattern == "/#":
        return True
    rx = "^" + re.escape(pattern).replace(r"/\#", "(/.*)?").replace(r"\+", "[^/]+") + "$"
    return re.match(rx, scope) is not None
