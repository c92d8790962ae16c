"""Query parameters that shape entity output (options, attrs, pick, omit, lang, datasetId, join),
shared by the entity, batch and temporal routes."""

from __future__ import annotations

from typing import Any

from citybase.api.ngsi_ld.common import Call, options_of, split
from citybase.context.errors import BadRequestData
from citybase.context.model import Entity, check_name
from citybase.context.render import View, apply_projection, parse_projection, render, render_joined


def view_of(call: Call, opts: set[str] | None = None, *, attrs_param: bool = True) -> View:
    """The View a request asks for."""
    opts = options_of(call) if opts is None else opts
    forms = {"keyValues", "simplified", "concise", "normalized"} & opts
    if len(forms) > 1 and not forms <= {"keyValues", "simplified"}:
        raise BadRequestData(f"options {sorted(forms)} exclude each other")
    form = "normalized"
    if forms & {"keyValues", "simplified"}:
        form = "keyValues"
    elif "concise" in forms:
        form = "concise"
    view = View(call.ctx, form=form, sys_attrs="sysAttrs" in opts, lang=call.param("lang"))
    attrs = split(call.param("attrs")) if attrs_param else None
    raw_pick, raw_omit = call.param("pick"), call.param("omit")
    if raw_pick is not None and attrs is not None:
        raise BadRequestData("pick and attrs exclude each other")
    if raw_omit is not None and attrs is not None:
        raise BadRequestData("omit and attrs exclude each other")
    pick = parse_projection(raw_pick) if raw_pick is not None else None
    omit = parse_projection(raw_omit) if raw_omit is not None else None
    if pick is not None and omit is not None and set(pick) & set(omit):
        raise BadRequestData("a member cannot be both picked and omitted")
    for n in attrs or []:
        check_name(n)
    if attrs is not None:
        view.attrs = {call.ctx.expand(a) for a in attrs}
    apply_projection(view, pick, omit)
    ds = split(call.param("datasetId"))
    if ds is not None:
        view.dataset_ids = {None if d == "@none" else d for d in ds}
    return view


def join_of(call: Call, query: dict[str, Any] | None = None) -> tuple[str | None, int]:
    """join and joinLevel: from a Query body's members where it has them (POST
    /entityOperations/query), else from the URL."""
    q = query or {}
    join = q["join"] if "join" in q else call.param("join")
    if join not in (None, "inline", "flat", "@none"):
        raise BadRequestData(f"join {join!r} is not inline, flat or @none")
    raw = q["joinLevel"] if "joinLevel" in q else call.param("joinLevel")
    try:
        level = int(raw) if raw is not None else 1
    except (TypeError, ValueError) as e:
        raise BadRequestData("joinLevel must be a positive integer") from e
    if level < 1:
        raise BadRequestData("joinLevel must be a positive integer")
    return (None if join == "@none" else join), level


def present(call: Call, entities: list[Entity], view: View, query: dict[str, Any] | None = None) -> list[Any]:
    """Entities rendered, with linked entities when join asks for them (flat ones follow theirs)."""
    join, level = join_of(call, query)
    if join is None:
        return [render(e, view) for e in entities]

    def fetch(ids: list[str]) -> dict[str, Entity]:
        return call.service.store.get_many(call.tenant, ids)

    out: list[Any] = []
    for e in entities:
        got = render_joined(e, view, fetch, join, level)
        if join == "flat":
            ids = {o.get("id") for o in out}
            out.extend(x for x in got if x.get("id") not in ids)
        else:
            out.append(got)
    return out
