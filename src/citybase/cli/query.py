"""`citybase query …`: the spatio-temporal queries from the shell, over `CityBase.query`."""

from __future__ import annotations

from typing import Annotated

import typer

from citybase.cli.main import DEFAULT_ROOT, Root, _open, app, print_table

query_app = typer.Typer(
    help="Spatio-temporal queries (B1-B8, everything about a place).", no_args_is_help=True
)
app.add_typer(query_app, name="query")

Limit = Annotated[int, typer.Option(help="Rows to show.")]
Start = Annotated[str | None, typer.Option(help="Start of the time window (ISO time, city time zone).")]
End = Annotated[str | None, typer.Option(help="End of the time window (exclusive).")]


@query_app.command()
def bbox(
    dataset: str,
    xmin: float,
    ymin: float,
    xmax: float,
    ymax: float,
    start: Start = None,
    end: End = None,
    limit: Limit = 20,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B1/B2: rows in a lon/lat box, optionally in a time window."""
    with _open(root) as cb:
        box = (xmin, ymin, xmax, ymax)
        t = cb.query.range(dataset, box, start, end) if start or end else cb.query.bbox(dataset, box)
        print_table(t, f"{dataset} in {box}", limit)


@query_app.command()
def track(
    dataset: str,
    object_id: str,
    start: Start = None,
    end: End = None,
    limit: Limit = 20,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B3: one object's positions, in time order."""
    with _open(root) as cb:
        print_table(cb.query.track(dataset, object_id, start, end), f"track of {object_id}", limit)


@query_app.command()
def nearest(
    dataset: str,
    lon: float,
    lat: float,
    k: Annotated[int, typer.Option(help="How many neighbours.")] = 5,
    start: Start = None,
    end: End = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B4: the k rows nearest a point (great-circle metres)."""
    with _open(root) as cb:
        print_table(cb.query.nearest(dataset, lon, lat, k, start, end), f"{k} nearest to ({lon}, {lat})", k)


@query_app.command()
def counts(
    dataset: str,
    level: Annotated[str, typer.Option(help="district, street, community, grid or building.")] = "district",
    every: Annotated[str | None, typer.Option(help="Time bucket, e.g. 1h or 1d.")] = None,
    start: Start = None,
    end: End = None,
    limit: Limit = 30,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B5: counts per area of a level (per time bucket)."""
    with _open(root) as cb:
        print_table(
            cb.query.counts_by_place(dataset, level, start, end, every), f"{dataset} by {level}", limit
        )


@query_app.command()
def place(
    level: str,
    code: str,
    start: Start = None,
    end: End = None,
    limit: Limit = 10,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Everything about a place: every dataset's rows in one area, in a time window."""
    import pyarrow as pa

    with _open(root) as cb:
        res = cb.query.about_place(level, code, start, end)
        for name, t in res.items():
            if isinstance(t, pa.Table):
                print_table(t, name, limit)
