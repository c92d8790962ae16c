"""`citybase catalog|access|usage|stats …`: the share box from the shell, over `Sharing`.

The CLI runs beside the platform's files, so it is trusted like the operator: by default it acts
as the operator; `--as DEPT` acts for a department (to request, approve or read as it would), and
`--key KEY` acts for whoever an API key belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from citybase.cli.main import DEFAULT_ROOT, Root, _open, app, console
from citybase.errors import CitybaseError
from citybase.registry import Principal, Role
from citybase.share import CatalogMeta, Decision, Grain, OpenAttribute, RowFilter, Sharing

catalog_app = typer.Typer(
    help="The data resource catalog: search, show, describe, DCAT.", no_args_is_help=True
)
access_app = typer.Typer(
    help="Access requests and grants: request, approve, refuse, revoke, list.", no_args_is_help=True
)
usage_app = typer.Typer(help="Usage of data resources, summarised.", no_args_is_help=True)
stats_app = typer.Typer(help="The platform's figures: systems, datasets, records, uses.")

As = Annotated[str | None, typer.Option("--as", help="Act for this department (trusted local CLI).")]
Key = Annotated[str | None, typer.Option("--key", envvar="CITYBASE_KEY", help="Act for this API key.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _sharing(root: Path) -> Iterator[tuple[Any, Sharing]]:
    with _open(root) as cb:
        share = getattr(cb, "share", None)
        own = not isinstance(share, Sharing)
        s = Sharing(cb) if own else share
        assert isinstance(s, Sharing)
        try:
            yield cb, s
        finally:
            if own:
                s.close()


def _who(cb: Any, as_: str | None, key: str | None) -> Principal:
    if key:
        p: Principal | None = cb.registry.authenticate(key)
        if p is None:
            raise typer.BadParameter("the key is not valid", param_hint="--key")
        return p
    if as_:
        cb.registry.department(as_)
        return Principal(department=as_, role=Role.MEMBER, key_id="cli")
    return Principal(department="operator", role=Role.ADMIN, key_id="cli")


def _print_json(v: Any) -> None:
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json")
    elif isinstance(v, list):
        v = [x.model_dump(mode="json") if isinstance(x, BaseModel) else x for x in v]
    console.print_json(json.dumps(v, ensure_ascii=False, default=str))


def _fail(e: CitybaseError) -> typer.Exit:
    console.print(f"[red]{e.code}[/red]: {e}")
    return typer.Exit(code=1)


# -- catalog --------------------------------------------------------------------------------------


@catalog_app.command("search")
def catalog_search(
    q: Annotated[str | None, typer.Argument(help="Free text; every term must occur.")] = None,
    fq: Annotated[str | None, typer.Option(help="Filters, e.g. 'sharing:conditional provider:hrss'.")] = None,
    rows: Annotated[int, typer.Option(help="Entries per page.")] = 20,
    start: Annotated[int, typer.Option(help="Offset of the page.")] = 0,
    sort: Annotated[str | None, typer.Option(help="score desc | name asc | rows desc | ...")] = None,
    as_json: Json = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Search the catalog (like CKAN's package_search), with facet counts."""
    from citybase.share.search import parse_fq

    with _sharing(root) as (_, s):
        try:
            r = s.search(q, parse_fq(fq), rows=rows, start=start, sort=sort)
        except CitybaseError as e:
            raise _fail(e) from None
    if as_json:
        _print_json(r)
        return
    t = Table(title=f"{r.count} data resources", header_style="bold cyan")
    for c in ("name", "code", "title", "provider", "kind", "sharing", "rows"):
        t.add_column(c)
    for x in r.results:
        t.add_row(x.name, x.code, x.title, x.provider, x.kind, x.sharing, f"{x.rows:,}")
    console.print(t)
    for facet, counts in r.facets.items():
        if counts:
            console.print(f"[dim]{facet}:[/dim] " + ", ".join(f"{k} ({n})" for k, n in counts.items()))


@catalog_app.command("show")
def catalog_show(dataset: str, root: Root = DEFAULT_ROOT) -> None:
    """One catalog entry, as JSON."""
    with _sharing(root) as (_, s):
        try:
            _print_json(s.entry(dataset))
        except CitybaseError as e:
            raise _fail(e) from None


@catalog_app.command("dcat")
def catalog_dcat(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
    base_url: Annotated[str, typer.Option(help="Public URL of the platform's API.")] = "http://localhost",
    root: Root = DEFAULT_ROOT,
) -> None:
    """Export the whole catalog as DCAT 3 JSON-LD."""
    with _sharing(root) as (_, s):
        doc = s.dcat(base_url)
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"{len(doc['dcat:dataset'])} datasets written to {out}")


@catalog_app.command("describe")
def catalog_describe(
    dataset: str,
    abstract: Annotated[str | None, typer.Option(help="Abstract (摘要); default the declaration's.")] = None,
    conditions: Annotated[str, typer.Option(help="Sharing conditions (共享条件).")] = "",
    open_: Annotated[OpenAttribute, typer.Option("--open", help="Open attribute (开放属性).")] = (
        OpenAttribute.not_open
    ),
    keyword: Annotated[list[str] | None, typer.Option(help="A keyword (repeat).")] = None,
    code: Annotated[str | None, typer.Option(help="Resource code; default derived.")] = None,
    k: Annotated[int, typer.Option(help="Aggregates: least contributors per published cell.")] = 5,
    level: Annotated[str, typer.Option(help="Aggregates: the exact grain's place level.")] = "district",
    every: Annotated[str | None, typer.Option(help="Aggregates: the exact grain's time bin.")] = "1d",
    epsilon_budget: Annotated[float, typer.Option(help="DP budget per consumer.")] = 1.0,
    as_: As = None,
    key: Key = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Set a dataset's catalog metadata and aggregate policy (its provider or the operator)."""
    from citybase.share import AggregatePolicy

    meta = CatalogMeta(
        code=code,
        abstract=abstract,
        conditions=conditions,
        open=open_,
        keywords=keyword or [],
        policy=AggregatePolicy(k=k, grain=Grain(level=level, every=every), epsilon_budget=epsilon_budget),
    )
    with _sharing(root) as (cb, s):
        try:
            entry = s.describe(_who(cb, as_, key), dataset, meta)
        except CitybaseError as e:
            raise _fail(e) from None
    console.print(f"[green]described[/green] {entry.name} ({entry.code})")


# -- access ---------------------------------------------------------------------------------------


def _places(place: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in place or []:
        level, sep, code = p.partition("=")
        if not sep:
            raise typer.BadParameter(f"{p!r} is not level=code", param_hint="--place")
        out.setdefault(level, []).append(code)
    return out


def _print_requests(rs: list[Any]) -> None:
    t = Table(header_style="bold cyan")
    for c in ("id", "dataset", "consumer", "provider", "state", "expires", "purpose"):
        t.add_column(c)
    for r in rs:
        exp = r.expires_at.isoformat(timespec="minutes") if r.expires_at else ""
        t.add_row(r.id, r.dataset, r.consumer, r.provider, r.state.value, exp, r.purpose)
    console.print(t)


Field = Annotated[list[str] | None, typer.Option("--field", help="A field (repeat); default all.")]
Place = Annotated[
    list[str] | None, typer.Option("--place", help="level=code, e.g. district=110105 (repeat).")
]


@access_app.command("request")
def access_request(
    dataset: str,
    purpose: Annotated[str, typer.Option(help="Why the data is needed.")],
    field: Field = None,
    place: Place = None,
    days: Annotated[int, typer.Option(help="How long the grant should run.")] = 90,
    as_: As = None,
    key: Key = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Ask for a dataset's rows (granted at once when the dataset is unconditional)."""
    rf = RowFilter(places=_places(place)) if place else None
    with _sharing(root) as (cb, s):
        try:
            r = s.request(
                _who(cb, as_, key), dataset, purpose=purpose, fields=field, row_filter=rf, days=days
            )
        except CitybaseError as e:
            raise _fail(e) from None
    console.print(f"request [bold]{r.id}[/bold]: {r.state.value}")


@access_app.command("approve")
def access_approve(
    request_id: str,
    field: Field = None,
    place: Place = None,
    days: Annotated[int | None, typer.Option(help="Fewer days than asked.")] = None,
    unmask: Annotated[
        list[str] | None, typer.Option(help="A personal field shown unmasked (repeat).")
    ] = None,
    reason: str = "",
    as_: As = None,
    key: Key = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Approve a request, narrowed by any of --field, --place, --days."""
    narrowed = bool(field or place or days)
    d = Decision(
        action="narrow" if narrowed else "approve",
        fields=field,
        row_filter=RowFilter(places=_places(place)) if place else None,
        days=days,
        unmasked=unmask or [],
        reason=reason,
    )
    with _sharing(root) as (cb, s):
        try:
            r = s.decide(_who(cb, as_, key), request_id, d)
        except CitybaseError as e:
            raise _fail(e) from None
    console.print(f"request [bold]{r.id}[/bold]: {r.state.value} until {r.expires_at}")


@access_app.command("refuse")
def access_refuse(
    request_id: str, reason: str = "", as_: As = None, key: Key = None, root: Root = DEFAULT_ROOT
) -> None:
    """Refuse a request."""
    with _sharing(root) as (cb, s):
        try:
            r = s.decide(_who(cb, as_, key), request_id, Decision(action="refuse", reason=reason))
        except CitybaseError as e:
            raise _fail(e) from None
    console.print(f"request [bold]{r.id}[/bold]: {r.state.value}")


@access_app.command("revoke")
def access_revoke(
    request_id: str, reason: str = "", as_: As = None, key: Key = None, root: Root = DEFAULT_ROOT
) -> None:
    """Revoke a grant; it stops working at once."""
    with _sharing(root) as (cb, s):
        try:
            r = s.revoke(_who(cb, as_, key), request_id, reason)
        except CitybaseError as e:
            raise _fail(e) from None
    console.print(f"request [bold]{r.id}[/bold]: {r.state.value}")


@access_app.command("list")
def access_list(
    box: Annotated[str, typer.Option(help="mine | incoming | all")] = "all",
    grants: Annotated[bool, typer.Option(help="Only live grants.")] = False,
    as_json: Json = False,
    as_: As = None,
    key: Key = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Requests made or to answer (or live grants)."""
    with _sharing(root) as (cb, s):
        try:
            who = _who(cb, as_, key)
            rs = s.grants_of(who) if grants else s.requests(who, box)
        except CitybaseError as e:
            raise _fail(e) from None
    if as_json:
        _print_json(rs)
    else:
        _print_requests(rs)


# -- usage and figures ----------------------------------------------------------------------------


@usage_app.command("summary")
def usage_summary(
    by: Annotated[
        list[str] | None, typer.Option(help="day | consumer | dataset | kind | purpose (repeat).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option(help="Day after the last (YYYY-MM-DD).")] = None,
    as_json: Json = False,
    as_: As = None,
    key: Key = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Uses and rows, grouped."""
    dims = by or ["dataset"]
    with _sharing(root) as (cb, s):
        try:
            rows = s.usage_summary(
                _who(cb, as_, key),
                dims,
                start=date.fromisoformat(start) if start else None,
                end=date.fromisoformat(end) if end else None,
            )
        except CitybaseError as e:
            raise _fail(e) from None
    if as_json:
        _print_json(rows)
        return
    t = Table(title="usage", header_style="bold cyan")
    for c in [*dims, "uses", "rows"]:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(getattr(r, d)) for d in dims], f"{r.uses:,}", f"{r.rows:,}")
    console.print(t)


@stats_app.callback(invoke_without_command=True)
def stats(
    days: Annotated[int, typer.Option(help="Days of the per-day series.")] = 7,
    as_json: Json = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Systems connected, datasets, total records, new records a day and data uses."""
    with _sharing(root) as (_, s):
        st = s.stats(days)
    if as_json:
        _print_json(st)
        return
    console.print(
        f"departments {st.departments}  systems connected {st.systems_connected}  datasets {st.datasets}  "
        f"records {st.total_records:,}  data uses {st.data_uses:,}"
    )
    t = Table(header_style="bold cyan")
    for c in ("day", "new records", "data uses"):
        t.add_column(c)
    for a, b in zip(st.new_records_per_day, st.data_uses_per_day, strict=True):
        t.add_row(a.day.isoformat(), f"{a.count:,}", f"{b.count:,}")
    console.print(t)


app.add_typer(catalog_app, name="catalog")
app.add_typer(access_app, name="access")
app.add_typer(usage_app, name="usage")
app.add_typer(stats_app, name="stats")
