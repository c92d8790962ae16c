"""Stored entities to what a client asked for: compacted names, normalized / concise / keyValues,
system attributes, attribute projection (attrs, pick, omit), language choice and GeoJSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citybase.context.jsonld import ActiveContext
from citybase.context.model import ATTR_CORE, CONTENT, Entity, Instance

_SYS = ("createdAt", "modifiedAt", "deletedAt")


@dataclass
class View:
    """How to present entities: the client's context and options."""

    ctx: ActiveContext
    form: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    attrs: set[str] | None = None  # expanded names to keep (attrs / pick)
    omit: set[str] = field(default_factory=set)  # expanded names (or id/type) to drop
    pick_core: set[str] | None = None  # id / type kept by pick (None: all)
    lang: str | None = None
    dataset_ids: set[str | None] | None = None
    pick_sub: dict[str, Any] = field(default_factory=dict)  # linked-entity projections, by attribute
    omit_sub: dict[str, Any] = field(default_factory=dict)


def render(entity: Entity, view: View) -> dict[str, Any]:
    """One entity, compacted and shaped by the view."""
    ctx = view.ctx
    out: dict[str, Any] = {}
    if _core_kept("id", view):
        out["id"] = entity["id"]
    if _core_kept("type", view):
        types = [ctx.compact(t) for t in entity["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if "scope" in entity and _core_kept("scope", view):
        sc = entity["scope"]
        out["scope"] = sc[0] if len(sc) == 1 else sc
    if view.sys_attrs:
        for k in _SYS:
            if k in entity:
                out[k] = entity[k]
    for iri, instances in entity.get("attrs", {}).items():
        if view.attrs is not None and iri not in view.attrs:
            continue
        if iri in view.omit:
            continue
        chosen = instances
        if view.dataset_ids is not None:
            chosen = [i for i in instances if i.get("datasetId") in view.dataset_ids]
        if not chosen:
            continue
        rendered = [render_instance(i, view) for i in chosen]
        out[ctx.compact(iri)] = rendered[0] if len(rendered) == 1 else rendered
    return out


def _core_kept(name: str, view: View) -> bool:
    if name in view.omit:
        return False
    return view.pick_core is None or name in view.pick_core


def render_instance(inst: Instance, view: View) -> Any:
    ctx = view.ctx
    atype = inst.get("type", "Property")
    if view.form == "keyValues":
        return _key_value(inst, view)
    out: dict[str, Any] = {"type": atype}
    for k, v in inst.items():
        if k == "type":
            continue
        if k in ATTR_CORE:
            if k in _SYS and not view.sys_attrs and not (k == "deletedAt" and view.form == "temporal"):
                continue
            if k == "instanceId" and view.form != "temporal":
                continue
            if k == "vocab" or k == "previousVocab":
                v = [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(v)
            if k == "objectList":
                v = [{"object": o} for o in v]
            out[k] = v
        elif isinstance(v, dict):
            out[ctx.compact(k)] = render_instance(v, view)
    if atype == "LanguageProperty" and view.lang is not None:
        lm = out.pop("languageMap", {})
        tag, text = _pick_language(lm, view.lang)
        out["type"] = "Property"
        out["value"] = text
        if tag is not None:
            out["lang"] = tag
    if view.form == "concise":
        return _concise(out)
    return out


def _pick_language(lm: dict[str, Any], wanted: str) -> tuple[str | None, Any]:
    for tag in (t.strip().split(";")[0] for t in wanted.split(",")):
        if tag == "*" and lm:
            first = next(iter(lm))
            return first, lm[first]
        if tag in lm:
            return tag, lm[tag]
    if "@none" in lm:
        return "@none", lm["@none"]
    if lm:
        first = next(iter(lm))
        return first, lm[first]
    return None, None


def _concise(out: dict[str, Any]) -> Any:
    atype = out.pop("type")
    if atype in ("Property", "GeoProperty") and len(out) == 1 and "value" in out:
        return out["value"]
    if atype == "GeoProperty" and "value" in out:
        return out
    return out


def _key_value(inst: Instance, view: View) -> Any:
    atype = inst.get("type", "Property")
    key = CONTENT.get(atype, "value")
    v = inst.get(key)
    if atype == "VocabProperty":
        return [view.ctx.compact(x) for x in v] if isinstance(v, list) else view.ctx.compact(str(v))
    if atype == "LanguageProperty":
        if view.lang is not None:
            return _pick_language(v or {}, view.lang)[1]
        return {"languageMap": v}
    if atype == "JsonProperty":
        return {"json": v}
    return v


def to_feature(entity: dict[str, Any], geoproperty: str, ctx_url: Any = None) -> dict[str, Any]:
    """A rendered entity as a GeoJSON Feature with `geoproperty` as its geometry."""
    geometry = None
    g = entity.get(geoproperty)
    if isinstance(g, dict):
        geometry = g.get("value", g) if g.get("type") == "GeoProperty" or "value" in g else g
    elif isinstance(g, list) and g:
        first = g[0]
        geometry = first.get("value", first) if isinstance(first, dict) else None
    props = {k: v for k, v in entity.items() if k not in ("id", "@context")}
    feature: dict[str, Any] = {
        "id": entity.get("id"),
        "type": "Feature",
        "geometry": geometry,
        "properties": props,
    }
    if ctx_url is not None:
        feature["@context"] = ctx_url
    return feature


Projection = dict[str, "Projection | None"]


def parse_projection(text: str) -> Projection:
    """`id,locatedAt{id,name}` (pick / omit with linked-entity braces, clause 4.21) as a tree.

    >>> parse_projection("id,locatedAt{name}")
    {'id': None, 'locatedAt': {'name': None}}
    """
    from citybase.context.errors import BadRequestData

    pos = 0

    def level(depth: int) -> Projection:
        nonlocal pos
        out: Projection = {}
        expect_name = True
        while pos < len(text):
            c = text[pos]
            if c == ",":
                if expect_name:
                    raise BadRequestData(f"pick/omit: unexpected ',' at {pos}")
                expect_name = True
                pos += 1
            elif c == "}":
                if depth == 0 or expect_name:
                    raise BadRequestData(f"pick/omit: unexpected '}}' at {pos}")
                pos += 1
                return out
            elif c == "{":
                raise BadRequestData(f"pick/omit: unexpected '{{' at {pos}")
            else:
                start = pos
                while pos < len(text) and text[pos] not in ",{}":
                    pos += 1
                name = text[start:pos]
                if not name or any(ch in name for ch in ";()<>\"'= "):
                    raise BadRequestData(f"pick/omit: invalid name {name!r}")
                sub: Projection | None = None
                if pos < len(text) and text[pos] == "{":
                    pos += 1
                    sub = level(depth + 1)
                    if not sub:
                        raise BadRequestData("pick/omit: empty braces")
                out[name] = sub
                expect_name = False
        if depth > 0:
            raise BadRequestData("pick/omit: unclosed brace")
        if expect_name:
            raise BadRequestData("pick/omit: ends with ','")
        return out

    return level(0)


def apply_projection(view: View, pick: Projection | None, omit: Projection | None) -> View:
    """Set a view's top-level pick / omit from projection trees; nested parts go to linked views."""
    core = ("id", "type", "scope")
    if pick is not None:
        view.pick_core = {p for p in pick if p in core}
        view.attrs = {view.ctx.expand(p) for p in pick if p not in core}
        view.pick_sub = {view.ctx.expand(k): v for k, v in pick.items() if v is not None}
    if omit is not None:
        view.omit = {o if o in core else view.ctx.expand(o) for o, sub in omit.items() if sub is None}
        view.omit_sub = {view.ctx.expand(k): v for k, v in omit.items() if v is not None}
    return view


def linked_view(view: View, attr: str) -> View:
    sub = View(view.ctx, form=view.form, sys_attrs=view.sys_attrs, lang=view.lang)
    return apply_projection(sub, view.pick_sub.get(attr), view.omit_sub.get(attr))


def render_joined(entity: Entity, view: View, fetch: Any, join: str, level: int) -> Any:
    """An entity with its linked entities (join=inline: inside the relationship; flat: after it)."""
    out = render(entity, view)
    flat: list[dict[str, Any]] = [out]
    if level <= 0:
        return flat if join == "flat" else out
    seen = {entity["id"]}
    for iri, instances in entity.get("attrs", {}).items():
        name = view.ctx.compact(iri)
        if name not in out:
            continue
        objs: list[str] = []
        for inst in instances:
            if inst.get("type") in ("Relationship", "ListRelationship"):
                o = inst.get("object", inst.get("objectList"))
                objs.extend(o if isinstance(o, list) else [o])
        if not objs:
            continue
        found = fetch([o for o in objs if isinstance(o, str)])
        sub = linked_view(view, iri)
        if join == "flat":
            for o in objs:
                if o in found and o not in seen:
                    seen.add(o)
                    for item in render_joined(found[o], sub, fetch, "flat", level - 1):
                        if item.get("id") not in {f.get("id") for f in flat}:
                            flat.append(item)
            continue
        rendered = out[name]
        targets = rendered if isinstance(rendered, list) else [rendered]
        for idx, (inst, tgt) in enumerate(zip(instances, targets, strict=False)):
            o = inst.get("object")
            ids = o if isinstance(o, list) else [o]
            linked = [render_joined(found[i], sub, fetch, "inline", level - 1) for i in ids if i in found]
            if not linked:
                continue
            value = linked[0] if len(linked) == 1 else linked
            if view.form == "keyValues":
                if isinstance(rendered, list):
                    rendered[idx] = value
                else:
                    out[name] = value
            elif isinstance(tgt, dict):
                tgt["entity"] = value
    return flat if join == "flat" else out
