"""`citybase ops …`: the operations queue from the shell, over `citybase.ops.Operations`.

The CLI runs beside the platform's files, so it acts as the operator by default; `--as DEPT`
acts for a department (to move the events dispatched to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from citybase.cli.main import DEFAULT_ROOT, Root, _open, app, console
from citybase.errors import CitybaseError
from citybase.ops import Event, NewEvent, Operations, Status, sync
from citybase.registry import Principal, Role

ops_app = typer.Typer(
    help="Operations: the events queue (hotline complaints, IoT alarms): list, dispatch, update.",
    no_args_is_help=True,
)

As = Annotated[str | None, typer.Option("--as", help="Act for this department (default: the operator).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Note = Annotated[str, typer.Option(help="A note kept in the event's history.")]


@contextmanager
def _ops(root: Path) -> Iterator[tuple[Any, Operations]]:
    with _open(root) as cb:
        try:
            yield cb, Operations(cb.meta, departments=lambda: [d.id for d in cb.registry.departments()])
        except CitybaseError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from e


def _who(as_: str | None) -> Principal:
    if as_:
        return Principal(as_, Role.MEMBER, "cli")
    return Principal("operator", Role.ADMIN, "cli")


def _print(events: list[Event], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([e.model_dump(mode="json") for e in events]))
        return
    t = Table(header_style="bold cyan")
    for c in ("id", "status", "department", "source", "title", "district", "created"):
        t.add_column(c, overflow="fold")
    for e in events:
        t.add_row(
            e.id,
            e.status.value,
            e.department or "",
            e.source.value,
            e.title,
            e.district or "",
            f"{e.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(t)


@ops_app.command("list")
def list_(
    root: Root = DEFAULT_ROOT,
    status: Annotated[list[Status] | None, typer.Option(help="Only these states (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 50,
    as_: As = None,
    as_json: Json = False,
) -> None:
    """The queue, newest first: every event for the operator, a department's own with --as."""
    with _ops(root) as (_, ops):
        _print(ops.list(_who(as_), status=status, limit=limit), as_json)


@ops_app.command()
def show(event_id: str, root: Root = DEFAULT_ROOT, as_: As = None) -> None:
    """One event and its history (who did what, when)."""
    with _ops(root) as (_, ops):
        console.print_json(ops.get(_who(as_), event_id).model_dump_json())


@ops_app.command()
def add(
    title: str,
    root: Root = DEFAULT_ROOT,
    category: Annotated[str | None, typer.Option(help="A category, e.g. 'water'.")] = None,
    lon: Annotated[float | None, typer.Option(help="Where (longitude).")] = None,
    lat: Annotated[float | None, typer.Option(help="Where (latitude).")] = None,
    description: Annotated[str, typer.Option(help="What happened.")] = "",
) -> None:
    """Enter an event by hand (as the operator)."""
    with _ops(root) as (_, ops):
        e = ops.create(
            _who(None), NewEvent(title=title, category=category, lon=lon, lat=lat, description=description)
        )
        console.print(f"added {e.id}")


@ops_app.command()
def dispatch(event_id: str, department: str, root: Root = DEFAULT_ROOT, note: Note = "") -> None:
    """Dispatch an event to a department (as the operator)."""
    with _ops(root) as (_, ops):
        e = ops.dispatch(_who(None), event_id, department, note)
        console.print(f"{e.id}: {e.status.value} to {e.department}")


@ops_app.command()
def status(
    event_id: str,
    new: Annotated[Status, typer.Argument(help="in_progress, closed or reopened.")],
    root: Root = DEFAULT_ROOT,
    note: Note = "",
    as_: As = None,
) -> None:
    """Move an event along, as the department it is dispatched to (--as) or the operator."""
    with _ops(root) as (_, ops):
        e = ops.update(_who(as_), event_id, new, note)
        console.print(f"{e.id}: {e.status.value}")


@ops_app.command("sync")
def sync_(
    root: Root = DEFAULT_ROOT,
    backlog: Annotated[int, typer.Option(help="On a first sync, take only this many newest rows.")] = 200,
) -> None:
    """Pull new hotline complaints and IoT alarms from the lake into the queue."""
    with _ops(root) as (cb, ops):
        console.print(f"added {sync(ops, cb, backlog=backlog)} events")


app.add_typer(ops_app, name="ops")
