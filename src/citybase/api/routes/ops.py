"""Operations: the events queue over HTTP, a thin shell over `citybase.ops.Operations`.

The operator (admin key) sees the whole queue, enters and dispatches events; a department sees the
events dispatched to it and moves them along (`requested → dispatched → in_progress → closed`, and
`closed → reopened`). New hotline rows and IoT alarms are pulled into the queue when the operator
lists it (at most every `SYNC_EVERY` seconds) or on `POST /api/v1/ops/sync`.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from citybase.api.auth import Admin, Caller
from citybase.ops import Event, NewEvent, Operations, Status, sync

router = APIRouter(prefix="/api/v1/ops", tags=["operations"])

SYNC_EVERY = 2.0
_lock = threading.Lock()


def operations(request: Request) -> Operations:
    """The app's `Operations` (made on first use, on the platform's metadata database)."""
    state = request.app.state
    ops = getattr(state, "ops", None)
    if ops is None:
        with _lock:
            ops = getattr(state, "ops", None)
            if ops is None:
                cb = state.cb
                ops = Operations(cb.meta, departments=lambda: [d.id for d in cb.registry.departments()])
                state.ops = ops
                state.ops_synced = 0.0
    assert isinstance(ops, Operations)
    return ops


def pull(request: Request, *, force: bool = False) -> int:
    """Import new hotline rows and alarms, unless that was done less than SYNC_EVERY seconds ago."""
    ops = operations(request)
    state = request.app.state
    with _lock:
        if not force and time.monotonic() - state.ops_synced < SYNC_EVERY:
            return 0
        state.ops_synced = time.monotonic()
        return sync(ops, state.cb)


class DispatchIn(BaseModel):
    department: str = Field(min_length=1, description="The department that will act.")
    note: str = ""


class StatusIn(BaseModel):
    status: Status
    note: str = ""


class SyncOut(BaseModel):
    added: int


@router.get("/events", response_model=list[Event], summary="The events queue (as the caller sees it)")
def list_events(
    request: Request,
    who: Caller,
    status: Annotated[list[Status] | None, Query(description="Only these states.")] = None,
    department: Annotated[str | None, Query(description="Operator: only this department's.")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[Event]:
    if who.is_admin:
        pull(request)
    return operations(request).list(who, status=status, department=department, limit=limit)


@router.get("/counts", response_model=dict[str, int], summary="Events per status")
def counts(request: Request, who: Caller) -> dict[str, int]:
    return operations(request).counts(who)


@router.post("/events", response_model=Event, status_code=201, summary="Enter an event (operator)")
def create_event(request: Request, body: NewEvent, who: Admin) -> Event:
    return operations(request).create(who, body)


@router.get("/events/{event_id}", response_model=Event, summary="One event with its history")
def get_event(request: Request, event_id: str, who: Caller) -> Event:
    return operations(request).get(who, event_id)


@router.post("/events/{event_id}/dispatch", response_model=Event, summary="Dispatch to a department")
def dispatch(request: Request, event_id: str, body: DispatchIn, who: Caller) -> Event:
    return operations(request).dispatch(who, event_id, body.department, body.note)


@router.post("/events/{event_id}/status", response_model=Event, summary="Move an event along")
def set_status(request: Request, event_id: str, body: StatusIn, who: Caller) -> Event:
    return operations(request).update(who, event_id, body.status, body.note)


@router.post("/sync", response_model=SyncOut, summary="Pull new hotline rows and alarms into the queue")
def sync_now(request: Request, _: Admin) -> SyncOut:
    return SyncOut(added=pull(request, force=True))
