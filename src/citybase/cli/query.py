"""`citybase query …`: the spatio-temporal queries from the shell, over `CityBase.query`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer
from rich.markup import escape

from citybase.cli.main import DEFAULT_ROOT, Root, _open, app, console, lead, print_table

if TYPE_CHECKING:
    from citybase.query.place import PlaceReport

query_app = typer.Typer(
    help="Spatio-temporal queries (B1-B8, everything about a place).", no_args_is_help=True
)
app.add_typer(query_app, name="query")

Limit = Annotated[int, typer.Option(help="Rows to show.")]
Start = Annotated[
    str | None,
    typer.Option(help="Start of the time window: ISO 8601, UTC unless it has an offset (…T08:00+08:00)."),
]
End = Annotated[str | None, typer.Option(help="End of the time window (exclusive).")]
Every = Annotated[str | None, typer.Option(help="Time bucket, e.g. 1h or 1d.")]
Tz = Annotated[
    str | None,
    typer.Option(
        help="Buckets by this time zone's clock (IANA name, or 'city' for the city's); default UTC."
    ),
]


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
        t = cb.query.nearest(dataset, lon, lat, k, start, end)
        print_table(lead(t, [*t.column_names[:1], "distance_m"]), f"{k} nearest to ({lon}, {lat})", k)


@query_app.command()
def counts(
    dataset: str,
    level: Annotated[str, typer.Option(help="district, street, community, grid or building.")] = "district",
    every: Every = None,
    tz: Tz = None,
    start: Start = None,
    end: End = None,
    limit: Limit = 30,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B5: counts per area of a level (per time bucket)."""
    with _open(root) as cb:
        t = cb.query.counts_by_place(dataset, level, start, end, every, tz=_zone(cb, tz))
        print_table(t, f"{dataset} by {level}", limit)


@query_app.command()
def within(
    dataset: str,
    polygon: Annotated[str, typer.Argument(help="The area as WKT, e.g. 'POLYGON((lon lat, ...))'.")],
    limit: Limit = 20,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B1: rows inside a polygon (boundary included)."""
    with _open(root) as cb:
        print_table(cb.query.within(dataset, polygon), f"{dataset} within the polygon", limit)


@query_app.command()
def h3(
    dataset: str,
    resolution: Annotated[int, typer.Option(help="H3 resolution (at most the stored one).")] = 8,
    every: Every = None,
    tz: Tz = None,
    start: Start = None,
    end: End = None,
    limit: Limit = 30,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B6: counts per H3 cell (per time bucket)."""
    with _open(root) as cb:
        t = cb.query.h3_bins(dataset, resolution, start, end, every, tz=_zone(cb, tz))
        print_table(t, f"{dataset} by H3 r{resolution}", limit)


@query_app.command()
def grid(
    dataset: str,
    every: Every = None,
    tz: Tz = None,
    start: Start = None,
    end: End = None,
    limit: Limit = 30,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B6: counts per management grid cell (per time bucket)."""
    with _open(root) as cb:
        t = cb.query.grid_bins(dataset, start, end, every, tz=_zone(cb, tz))
        print_table(t, f"{dataset} by grid cell", limit)


def _zone(cb: Any, tz: str | None) -> str | None:
    """`--tz`: a zone name, or 'city' for the city's own."""
    return cb.city.timezone if tz == "city" and cb.city is not None else tz


@query_app.command()
def trajectories(
    dataset: str,
    start: Start = None,
    end: End = None,
    stay_radius: Annotated[float, typer.Option(help="Stay point radius, metres.")] = 100.0,
    stay_min: Annotated[float, typer.Option(help="Shortest stay, seconds.")] = 300.0,
    limit: Limit = 20,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B7: per-object length, duration, speeds and stay points."""
    with _open(root) as cb:
        stats, stays = cb.query.trajectories(dataset, start, end, stay_radius, stay_min)
        print_table(stats, f"trajectories of {dataset}", limit)
        print_table(stays, "stay points", limit)


@query_app.command("nearest-join")
def nearest_join(
    events: Annotated[str, typer.Argument(help="Dataset of events (points).")],
    objects: Annotated[str, typer.Argument(help="Dataset of objects (tracks, points...).")],
    k: Annotated[int, typer.Option(help="Neighbours per event.")] = 1,
    max_distance: Annotated[float | None, typer.Option(help="Farthest neighbour, metres.")] = None,
    tolerance: Annotated[
        str | None, typer.Option(help="Object positions within ± this of the event, e.g. 10m.")
    ] = None,
    start: Start = None,
    end: End = None,
    limit: Limit = 20,
    root: Root = DEFAULT_ROOT,
) -> None:
    """B8: each event's k nearest objects, with distance and rank."""
    with _open(root) as cb:
        t = cb.query.nearest_join(events, objects, k, max_distance, tolerance, start, end)
        print_table(nearest_first(t), f"{events} → nearest {objects}", limit)


def nearest_first(t: pa.Table) -> pa.Table:
    """B8's answer with what the question was about first: the event's first column, then who is
    nearest and how far; the rest after."""
    first = [c for c in t.column_names if not c.startswith("_")][:1]
    obj = [c for c in t.column_names if c.startswith("object_") and c not in ("object_geom", "object_h3")]
    return lead(t, [*first, "rank", "distance_m", *obj[:4]])


def print_place(report: PlaceReport, limit: int) -> None:
    """Everything about a place: rows per dataset, then the rows of each dataset that has any."""
    print_table(report.summary, limit=report.summary.num_rows)
    for name, t in report.items():
        if t.num_rows:
            print_table(t, name, limit)


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
    with _open(root) as cb:
        res = cb.query.about_place(level, code, start, end)
        console.print(escape(f"{res.place.get('name') or code} ({level} {code})"), style="bold")
        print_place(res, limit)
