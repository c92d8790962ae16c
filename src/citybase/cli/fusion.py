"""`citybase fusion …`: resolve department records into city entities, review, and look them up.

Builds the same objects as the Python API (`citybase.fusion`): rules from YAML, an `EntityStore`
folder, the division table and address reference the city configures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from citybase.errors import CitybaseError

fusion_app = typer.Typer(
    help="Fuse department records into city entities (people, firms, buildings).", no_args_is_help=True
)
review_app = typer.Typer(help="The review queue of uncertain pairs.", no_args_is_help=True)
fusion_app.add_typer(review_app, name="review")
console = Console()

StoreOpt = Annotated[
    Path, typer.Option("--store", help="Entity store folder (ids, reviews, models, results).")
]
DivisionsOpt = Annotated[
    Path | None, typer.Option(help="Folder of the national division table (`nbs2023_*.csv`, `cpca_*.csv`).")
]
Limit = Annotated[int, typer.Option(help="Rows to show.")]


def _show(t: pa.Table, title: str, limit: int) -> None:
    table = Table(title=f"{title} ({t.num_rows} rows)")
    for c in t.column_names:
        table.add_column(c, overflow="fold")
    for row in t.slice(0, limit).to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)


def _fail(e: Exception) -> None:
    console.print(f"[red]error:[/red] {e}")
    raise typer.Exit(1)


def _read(path: Path) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".csv":
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return pq.read_table(path)


@fusion_app.command()
def resolve(
    records: Annotated[
        list[Path], typer.Argument(help="Parquet or CSV files, one per source (the file stem names it).")
    ],
    rules: Annotated[Path, typer.Option(help="Matching rules YAML for this entity type.")],
    store: StoreOpt,
    divisions: DivisionsOpt = None,
    reference: Annotated[
        Path | None, typer.Option(help="Address reference (Parquet: address, lon/lat).")
    ] = None,
    default: Annotated[str | None, typer.Option(help="Division code prefix of the city, e.g. 11.")] = None,
    incremental: Annotated[
        bool, typer.Option(help="Only score these new records against the store.")
    ] = False,
) -> None:
    """Resolve records into entities; ids are kept stable in the store across runs."""
    from citybase.fusion import (
        AddressContext,
        Divisions,
        EntityStore,
        MatchRules,
        Reference,
        resolve_incremental,
    )
    from citybase.fusion import resolve as run

    try:
        r = MatchRules.from_yaml(rules)
        tables = []
        for p in records:
            t = _read(p)
            if r.source and r.source not in t.column_names:
                t = t.append_column(r.source, pa.array([p.stem] * t.num_rows, pa.string()))
            tables.append(t)
        recs = pa.concat_tables(tables, promote_options="permissive")
        ctx = None
        if divisions is not None:
            d = Divisions.load(divisions)
            ref = Reference.build(_read(reference), d, default=default) if reference else None
            ctx = AddressContext(d, ref, default)
        s = EntityStore(store)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task(f"{r.entity_type}: {recs.num_rows:,} records", total=None)

            def step(msg: str) -> None:
                bar.update(task, description=f"{r.entity_type}: {msg}")

            res = (resolve_incremental(recs, r, s, addresses=ctx, progress=step) if incremental
                   else run(recs, r, addresses=ctx, store=s, progress=step))  # fmt: skip
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    console.print(
        f"{recs.num_rows:,} records -> {res.entities.num_rows:,} {r.entity_type} entities;"
        f" {res.review.num_rows:,} pairs to review; tables in {s.path / 'entities' / r.entity_type}"
    )


@fusion_app.command()
def entity(entity_id: str, store: StoreOpt, limit: Limit = 20) -> None:
    """An entity's profile: golden record with provenance and its member records."""
    from citybase.fusion import EntityStore

    try:
        prof = EntityStore(store).profile(entity_id)
    except CitybaseError as e:
        _fail(e)
        return
    for name in ("golden", "provenance", "records", "members"):
        if name in prof:
            _show(prof[name], name, limit)


@fusion_app.command()
def entities(
    store: StoreOpt,
    entity_type: Annotated[str, typer.Option("--type", help="Entity type, e.g. person.")],
    limit: Limit = 20,
) -> None:
    """The golden records of one entity type."""
    from citybase.fusion import EntityStore

    try:
        _show(EntityStore(store).table(entity_type, "golden"), f"{entity_type} entities", limit)
    except CitybaseError as e:
        _fail(e)


@fusion_app.command("parse-address")
def parse_address(
    text: Annotated[list[str], typer.Argument(help="Addresses to parse.")],
    divisions: Annotated[Path, typer.Option(help="Folder of the national division table.")],
    default: Annotated[str | None, typer.Option(help="Division code prefix of the city, e.g. 11.")] = None,
) -> None:
    """Parse Chinese addresses into their parts (or say why one cannot be placed)."""
    from citybase.fusion import Divisions, parse_addresses

    try:
        t = parse_addresses(pa.array(text, pa.string()), Divisions.load(divisions), default=default)
    except CitybaseError as e:
        _fail(e)
        return
    for row in t.to_pylist():
        table = Table(title=row["normalised"] or "(empty)", show_header=False)
        for k, v in row.items():
            if v is not None and k != "normalised":
                table.add_row(k, str(v))
        console.print(table)


@review_app.command("list")
def review_list(
    store: StoreOpt,
    entity_type: Annotated[str | None, typer.Option("--type", help="Only this entity type.")] = None,
    limit: Limit = 20,
) -> None:
    """Pending pairs, most uncertain first."""
    from citybase.fusion import EntityStore, ReviewQueue

    _show(ReviewQueue(EntityStore(store)).pending(entity_type), "pending review", limit)


@review_app.command()
def accept(uid_a: str, uid_b: str, store: StoreOpt) -> None:
    """Mark two records as the same entity (linked from the next run on)."""
    from citybase.fusion import EntityStore, ReviewQueue

    try:
        ReviewQueue(EntityStore(store)).accept(uid_a, uid_b)
    except CitybaseError as e:
        _fail(e)
    console.print(f"accepted {uid_a} = {uid_b}")


@review_app.command()
def reject(uid_a: str, uid_b: str, store: StoreOpt) -> None:
    """Mark two records as different entities (never linked directly)."""
    from citybase.fusion import EntityStore, ReviewQueue

    try:
        ReviewQueue(EntityStore(store)).reject(uid_a, uid_b)
    except CitybaseError as e:
        _fail(e)
    console.print(f"rejected {uid_a} != {uid_b}")


# -- the platform's entity store (cb.fusion) -----------------------------------------------------

AsOpt = Annotated[str | None, typer.Option("--as", help="Read as this department (trusted local CLI).")]
KeyOpt = Annotated[str | None, typer.Option("--key", envvar="CITYBASE_KEY", help="Read as this API key.")]


def _platform(root: Path | None) -> Any:
    from citybase.cli.main import DEFAULT_ROOT, _open

    return _open(root or DEFAULT_ROOT)


RootOpt = Annotated[
    Path | None, typer.Option("--root", envvar="CITYBASE_ROOT", help="Folder of the embedded platform.")
]


@fusion_app.command()
def declare(
    declaration: Annotated[Path, typer.Argument(help="YAML: which datasets feed which entity type.")],
    root: RootOpt = None,
) -> None:
    """Declare what feeds the platform's entity types (checked against the lake's datasets)."""
    try:
        with _platform(root) as cb:
            d = cb.fusion.declare(declaration)
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    for t in d.types:
        feeds = ", ".join(f.dataset for f in t.feeds)
        console.print(f"{t.entity_type} ({t.ngsi}): fed by {feeds}")


@fusion_app.command()
def run(
    entity_type: Annotated[str, typer.Argument(help="A declared entity type, e.g. person.")],
    root: RootOpt = None,
) -> None:
    """Resolve an entity type afresh from its datasets in the lake (ids already given are kept)."""
    try:
        with _platform(root) as cb, console.status(f"{entity_type}: resolving") as status:
            res = cb.fusion.resolve(entity_type, progress=lambda m: status.update(f"{entity_type}: {m}"))
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    console.print(
        f"{res.members.num_rows:,} records -> {res.entities.num_rows:,} {entity_type} entities;"
        f" {res.review.num_rows:,} pairs to review"
    )


@fusion_app.command()
def update(root: RootOpt = None) -> None:
    """Join the rows that landed in the lake since the last run to their entities."""
    try:
        with _platform(root) as cb:
            added = cb.fusion.update()
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    if not added:
        console.print("nothing new")
    for t, n in added.items():
        console.print(f"{t}: {n:,} new records joined")


def _reader(cb: Any, as_: str | None, key: str | None) -> Any:
    from citybase.cli.share import _who

    return _who(cb, as_, key)


@fusion_app.command("list")
def list_(
    entity_type: Annotated[str | None, typer.Option("--type", help="Entity type, e.g. person.")] = None,
    q: Annotated[str | None, typer.Option(help="An entity id, or text in its records.")] = None,
    limit: Limit = 20,
    offset: Annotated[int, typer.Option(help="Entities to skip.")] = 0,
    as_: AsOpt = None,
    key: KeyOpt = None,
    root: RootOpt = None,
) -> None:
    """The platform's entities a department may see (default: as the operator)."""
    try:
        with _platform(root) as cb:
            page = cb.fusion.entities(_reader(cb, as_, key), entity_type, q=q, limit=limit, offset=offset)
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    table = Table(title=f"entities {offset + 1}-{offset + len(page.items)} of {page.total}")
    for c in ("id", "type", "golden", "sources"):
        table.add_column(c, overflow="fold")
    for i in page.items:
        golden = ", ".join(f"{k}={v}" for k, v in i.golden.items())
        table.add_row(i.id, i.type, golden, ", ".join(i.sources))
    console.print(table)


@fusion_app.command()
def show(
    entity_id: Annotated[str, typer.Argument(help="An entity id, e.g. P-3f2a9c01d4e5.")],
    as_: AsOpt = None,
    key: KeyOpt = None,
    root: RootOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """One entity's profile as a department may see it: golden record, records, links, place."""
    try:
        with _platform(root) as cb:
            p = cb.fusion.entity(_reader(cb, as_, key), entity_id)
    except (CitybaseError, OSError) as e:
        _fail(e)
        return
    if json_:
        console.print_json(p.model_dump_json())
        return
    golden = Table(title=f"{p.type} {p.id} ({p.ngsi_id})")
    for c in ("field", "value", "from"):
        golden.add_column(c, overflow="fold")
    for k, g in p.golden.items():
        golden.add_row(k, g.value, f"{g.dataset}|{g.record}")
    console.print(golden)
    for r in p.records:
        console.print(f"[bold]{r['dataset']}|{r['record_id']}[/bold] {r['values']}")
    for lk in p.links:
        arrow = "->" if lk.direction == "out" else "<-"
        console.print(f"{lk.relation} {arrow} {lk.entity} ({lk.entity_type}, {lk.records} records)")
    if p.location is not None:
        console.print(f"location {p.location.lon:.6f}, {p.location.lat:.6f}; places {p.places}")
