"""The `citybase` command: a thin shell over the Python API (`CityBase`).

Every command takes `--root` (or CITYBASE_ROOT): the folder of the embedded platform.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from citybase.errors import CitybaseError
from citybase.platform import HISTORY

app = typer.Typer(
    help="citybase: the shared data base of a digital-twin city.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console()
err = Console(stderr=True)

Root = Annotated[
    Path,
    typer.Option(
        "--root", envvar="CITYBASE_ROOT", help="Folder of the embedded platform.", show_default=True
    ),
]
DEFAULT_ROOT: Path = Path(".citybase")
#: Values up to this wide (terminal cells) stay on one line; wider ones wrap, in no fewer cells
#: than NARROW_TEXT.
WIDE_CELL = 26
NARROW_TEXT = 16


def _open(root: Path) -> Any:
    from citybase.platform import CityBase

    return CityBase.open(root)


def print_table(t: pa.Table, title: str | None = None, limit: int = 20, *, everything: bool = False) -> None:
    """An Arrow table as a readable terminal table: its first `limit` rows, and as many of its
    columns, left to right, as fit the terminal without breaking a short value over lines.

    Provenance and raw geometry are for machines and left out, unless `everything` (the columns a
    person chose in SQL) or they are all there is."""
    machine = [c for c in t.column_names if c.startswith("_") or c in ("geom", "h3", "geometry")]
    shown = [c for c in t.column_names if everything or c not in machine] or t.column_names
    cells = {c: [_fmt(v) for v in t.column(c).slice(0, limit).to_pylist()] for c in shown}
    natural = {c: max([cell_len(c), *(cell_len(Text.from_markup(v).plain) for v in cells[c])]) for c in shown}
    fits: list[str] = []
    used = 1  # the table's left border
    for c in shown:
        left = console.width - used - 3  # padding and a border
        # A short value takes its width; a long text what is left, if that is enough to read.
        need = natural[c] if natural[c] <= WIDE_CELL else min(natural[c], max(NARROW_TEXT, left))
        if fits and need > left:
            break
        fits.append(c)
        used += need + 3
    dropped = [c for c in shown if c not in fits]
    if title:
        console.print(title, style="bold")
    table = Table(show_lines=False, header_style="bold cyan", caption_justify="left")
    if dropped:
        head, tail = f"+{len(dropped)} columns: ", " (citybase sql shows all)"
        names = ", ".join(dropped)
        room = max(12, min(used, console.width) - len(head) - len(tail))
        table.caption = head + (names if len(names) <= room else names[: room - 1] + "…") + tail
    for c in fits:
        numeric = pa.types.is_integer(t.schema.field(c).type) or pa.types.is_floating(t.schema.field(c).type)
        # A short value never breaks over lines; a long text wraps in what width is left.
        table.add_column(c, no_wrap=natural[c] <= WIDE_CELL, justify="right" if numeric else "left")
    for i in range(min(limit, t.num_rows)):
        table.add_row(*[cells[c][i] for c in fits])
    console.print(table)
    if t.num_rows > limit:
        console.print(f"[dim]… {t.num_rows - limit:,} more rows ({t.num_rows:,} in all)[/dim]")


def lead(t: pa.Table, names: list[str]) -> pa.Table:
    """`t` with the columns `names` (those it has) first, so that they are the ones shown."""
    first = [c for c in names if c in t.column_names]
    return t.select(first + [c for c in t.column_names if c not in first])


def _fmt(v: Any) -> str:
    if v is None:
        return "[dim]∅[/dim]"
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000 and v < 2**52:
        return f"{v:,}"
    if isinstance(v, datetime):
        return v.isoformat(" ", "milliseconds" if v.microsecond else "seconds")
    return escape(str(v))


@app.command()
def city(
    declaration: Annotated[Path, typer.Argument(help="city.yaml: the city's area layers.")],
    root: Root = DEFAULT_ROOT,
) -> None:
    """Set up (or replace) the city model: districts, streets, communities, grid, buildings."""
    with _open(root) as cb:
        c = cb.setup_city(declaration)
        for level, layer in c.layers.items():
            console.print(f"  {level.value:<10} {len(layer):>8,} areas")
        console.print(
            f"[green]city {c.name!r} set up[/green] (time zone {c.timezone}, H3 res {c.h3_resolution})"
        )


@app.command()
def deploy(
    catalog: Annotated[
        str | None, typer.Option(help="DuckLake catalog, e.g. 'postgres:dbname=city host=db user=citybase'.")
    ] = None,
    data_path: Annotated[str | None, typer.Option(help="Shared folder of the lake's Parquet files.")] = None,
    meta_url: Annotated[
        str | None, typer.Option(help="Metadata database, e.g. 'postgresql+psycopg://citybase@db/city'.")
    ] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Point a root at shared parts (the cluster deployment): writes ROOT/deployment.yaml.

    Every process opened on that root (servers, the CLI) then uses the same PostgreSQL catalog and
    metadata database and the same data folder. Passwords go in PGPASSWORD or ~/.pgpass.
    """
    from citybase.deployment import Deployment

    path = Deployment(catalog=catalog, data_path=data_path, meta_url=meta_url).write(root)
    with _open(root) as cb:
        console.print(f"[green]{path}[/green]: {len(cb.datasets)} datasets in the lake")


@app.command()
def declare(
    files: Annotated[list[Path], typer.Argument(help="Dataset declarations (YAML or JSON).")],
    replace: Annotated[
        bool, typer.Option(help="Replace a dataset declared differently (drops its rows).")
    ] = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Declare datasets: name, department, kind, schema, time and place fields."""
    with _open(root) as cb:
        for f in files:
            spec = cb.declare(f, replace=replace)
            console.print(
                f"  declared [bold]{spec.name}[/bold] ({spec.kind.value}, {spec.department}/{spec.system})"
            )


@app.command()
def load(
    dataset: Annotated[str, typer.Argument(help="A declared dataset.")],
    files: Annotated[list[Path], typer.Argument(help="Files (or folders) to load.")],
    format: Annotated[
        str | None, typer.Option(help="Reader name, when the file ending does not tell.")
    ] = None,
    layer: Annotated[
        str | None, typer.Option(help="Layer inside the file (GeoPackage; OSM: buildings/roads/pois).")
    ] = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter (sniffed when not given).")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of CSV files, e.g. gbk.")] = "utf-8",
    root: Root = DEFAULT_ROOT,
) -> None:
    """Load files into a dataset: validated, place-keyed, committed atomically, idempotent."""
    from citybase.gateway.load import LoadResult
    from citybase.gateway.readers.base import ReadOptions, iter_files, reader_for

    opts = ReadOptions(layer=layer, delimiter=delimiter, encoding=encoding)
    paths: list[Path] = []
    for f in files:
        paths += list(iter_files(f, reader_for(f, format) if format else None))
    with _open(root) as cb:
        summary = Table(title=f"load into {dataset}", header_style="bold cyan")
        for c in ("file", "read", "added", "quarantined", "duplicates", "note"):
            summary.add_column(
                c, justify="right" if c in ("read", "added", "quarantined", "duplicates") else "left"
            )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("loading", total=len(paths), unit="files")
            rows_task = bar.add_task("  read", total=None, unit="rows")

            def read(path: Path, n: int) -> None:
                bar.update(task, description=f"loading {path.name}")
                bar.advance(rows_task, n)

            def done(_: LoadResult) -> None:
                bar.advance(task)

            # Small files share a commit (CityBase.load_many): a folder of them loads 14-19x faster.
            results = cb.load_many(dataset, paths, format=format, options=opts, progress=read, done=done)
        reasons: Counter[str] = Counter()
        for r in results:
            reasons.update(r.reasons)
        # Every file of a short list; of a long one, those with something to say, then the totals.
        shown = [r for r in results if len(results) <= SUMMARY_FILES or r.skipped or r.quarantined]
        for r in shown:
            note = "already loaded: nothing added" if r.skipped else ""
            summary.add_row(
                Path(r.source).name,
                f"{r.read:,}",
                f"{r.added:,}",
                f"{r.quarantined:,}",
                f"{r.duplicates:,}",
                note,
            )
        if len(results) > 1:
            summary.add_row(
                f"all {len(results):,} files",
                *(
                    f"{sum(getattr(r, k) for r in results):,}"
                    for k in ("read", "added", "quarantined", "duplicates")
                ),
                f"{len(results) - len(shown):,} more, loaded cleanly" if len(shown) < len(results) else "",
                style="bold",
            )
        console.print(summary)
        for reason, n in reasons.most_common():
            console.print(f"  [yellow]quarantined[/yellow] {n:,} × {reason}")
        if reasons:
            console.print(f"  see them with: citybase quarantine {dataset}")
        stored = len(cb.lake.data_files(dataset))
        rows = int(cb.sql(f"SELECT count(*) AS n FROM {cb.lake.table(dataset)}").column("n")[0].as_py())
        if stored >= MERGE_HINT_FILES and rows < stored * MERGE_HINT_ROWS:
            console.print(
                f"  {dataset} is in {stored:,} files of {rows // stored:,} rows on average: "
                "citybase maintain merges them into sorted runs, which queries read faster "
                "(a running server does it by itself)"
            )


#: Files listed one by one in a load's summary; beyond, only those skipped or with bad rows.
SUMMARY_FILES = 50
#: A load's summary suggests `citybase maintain` from this many files of a dataset, if they hold
#: fewer rows than this on average (a 100M-point load leaves ~8,900 files; merged, ~350).
MERGE_HINT_FILES = 100
MERGE_HINT_ROWS = 100_000


@app.command()
def datasets(root: Root = DEFAULT_ROOT) -> None:
    """List declared datasets with their row counts."""
    with _open(root) as cb:
        counts = cb.lake.stats()
        rows = [
            {
                "dataset": n,
                "kind": s.kind.value,
                "rows": counts.get(n, 0),
                "department": s.department,
                "system": s.system,
                "title": s.title,
            }
            for n, s in sorted(cb.datasets.items())
        ]
        print_table(pa.Table.from_pylist(rows) if rows else pa.table({"dataset": []}), "datasets", limit=500)


@app.command()
def quarantine(
    dataset: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Show rejected rows: file, line, field, value and reason."""
    with _open(root) as cb:
        # What went wrong first; the file's path, long, last.
        t = cb.quarantine(dataset).select(["dataset", "line", "field", "reason", "value", "source"])
        print_table(t, "quarantine", limit=limit)


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="SQL over the lake (tables lake.<dataset>, lake.place_<level>).")
    ],
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Run SQL (DuckDB with the spatial extension) over the city's tables."""
    with _open(root) as cb:
        t = cb.sql(query)
        if as_json:
            for r in t.to_pylist():
                console.print_json(json.dumps(r, default=str, ensure_ascii=False))
        else:
            print_table(t, limit=limit, everything=True)


@app.command()
def flush(root: Root = DEFAULT_ROOT) -> None:
    """Compact the durable append log into the lake."""
    with _open(root) as cb:
        console.print(f"applied {cb.flush()} log entries")


@app.command()
def maintain(
    root: Root = DEFAULT_ROOT,
    keep_hours: Annotated[
        float, typer.Option(min=0, help="Hours of history kept: older snapshots and merged-away files go.")
    ] = HISTORY.total_seconds() / 3600,
    keep_all: Annotated[bool, typer.Option(help="Keep every snapshot and file (merge only).")] = False,
) -> None:
    """Merge small files into sorted ones; forget old snapshots and delete the files merged away.

    What a running server does every few minutes: run it after loads when no server runs.

    Deleted files are listed in the ledger first, so the audit knows they are gone on purpose.
    """
    with (
        _open(root) as cb,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} files merged"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("merging", total=None)

        def merged(table: str, files: int) -> None:
            bar.update(task, description=f"merging {table}", advance=files)

        done = cb.maintain(None if keep_all else timedelta(hours=keep_hours), progress=merged)
    orphans = f", and {done.orphans:,} that no commit named" if done.orphans else ""
    console.print(
        f"merged {done.merged:,} small files; copied {done.copied:,} rows by object; "
        f"forgot {done.expired:,} snapshots; "
        f"deleted {done.removed:,} files no kept snapshot holds{orphans}"
    )


# Commands defined in other modules register themselves on `app` when imported.
from citybase.cli import demo as _demo  # noqa: E402, F401
from citybase.cli import ops as _ops  # noqa: E402, F401
from citybase.cli import query as _query  # noqa: E402, F401
from citybase.cli import registry as _registry  # noqa: E402, F401
from citybase.cli import serve as _serve  # noqa: E402, F401
from citybase.cli import share as _share  # noqa: E402, F401
from citybase.cli.fusion import fusion_app  # noqa: E402
from citybase.cli.iot import iot_app  # noqa: E402
from citybase.cli.ledger import ledger_app  # noqa: E402
from citybase.cli.ledger import witness as _witness  # noqa: E402

app.add_typer(ledger_app, name="ledger")
app.add_typer(iot_app, name="iot")
app.add_typer(fusion_app, name="fusion")
app.command(name="witness")(_witness)


def main() -> None:
    try:
        app()
    except CitybaseError as e:
        err.print(f"[red]error:[/red] {e}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
