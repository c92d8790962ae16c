"""The operations workflow's vocabulary: an event's states, the moves between them, and its records.

An event is something that needs a department to act: a citizen's hotline complaint, an alarm
raised by an IoT rule, or one the operator enters. The operator dispatches it to a department;
that department moves it along until it is closed; a closed event may be reopened and dispatched
again. Every move is kept in the event's history (who, when, from, to, note), so the queue can be
audited like the data.

>>> can_move(Status.dispatched, Status.in_progress)
True
>>> can_move(Status.requested, Status.closed)
False
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Status(StrEnum):
    """Where an event is in its life."""

    requested = "requested"  # arrived, waiting for the operator
    dispatched = "dispatched"  # handed to a department
    in_progress = "in_progress"  # the department is on it
    closed = "closed"  # done
    reopened = "reopened"  # closed too early: back to the operator


#: The status moves a department (or the operator) makes with `update`; dispatching is separate.
MOVES: dict[Status, frozenset[Status]] = {
    Status.requested: frozenset(),
    Status.dispatched: frozenset({Status.in_progress, Status.closed}),
    Status.in_progress: frozenset({Status.closed}),
    Status.closed: frozenset({Status.reopened}),
    Status.reopened: frozenset(),
}

#: The states from which the operator may (re)dispatch an event.
DISPATCHABLE = frozenset({Status.requested, Status.reopened, Status.dispatched, Status.in_progress})


def can_move(old: Status, new: Status) -> bool:
    """True when `update` may take an event from `old` to `new`."""
    return new in MOVES[old]


class Source(StrEnum):
    """Where an event came from."""

    hotline = "hotline"
    alarm = "alarm"
    manual = "manual"


class HistoryEntry(BaseModel):
    """One move of an event: who did what, when."""

    at: datetime
    by: str = Field(description="The acting department.")
    action: str = Field(description="created, dispatched or status")
    status_from: Status | None = None
    status_to: Status
    department: str | None = Field(default=None, description="The department dispatched to.")
    note: str = ""


class Event(BaseModel):
    """An event in the operations queue."""

    id: str
    source: Source
    source_id: str | None = None
    dataset: str | None = None
    title: str
    category: str | None = None
    description: str = ""
    lon: float | None = None
    lat: float | None = None
    district: str | None = None
    grid: str | None = None
    occurred_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    status: Status
    department: str | None = Field(default=None, description="The department it is dispatched to.")
    history: list[HistoryEntry] = Field(default_factory=list)


class NewEvent(BaseModel):
    """An event the operator enters by hand (or a source turns a row into)."""

    title: str = Field(min_length=1, max_length=500)
    category: str | None = None
    description: str = ""
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    district: str | None = None
    grid: str | None = None
    occurred_at: datetime | None = None
