"""`Operations`: the events queue in the metadata database, and who may move an event.

Rules, enforced here so that the HTTP API, the CLI and the console cannot differ:

- the operator (an admin key) sees every event, enters events and dispatches them;
- a department sees the events dispatched to it (any other looks like one that does not exist:
  404, as for another tenant's key) and moves them along `MOVES` (model.py);
- a move that the state machine does not allow is a 409 with the allowed moves in its message.

Each event keeps its history in a table of its own; `(source, source_id)` is unique, so importing
the same hotline row or alarm twice adds nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from citybase.errors import Conflict, Forbidden, InputError, NotFound
from citybase.meta import METADATA, ensure
from citybase.ops.model import DISPATCHABLE, MOVES, Event, HistoryEntry, NewEvent, Source, Status
from citybase.registry import Principal

EVENTS = Table(
    "ops_events",
    METADATA,
    Column("id", String(40), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("source_id", String(200)),
    Column("dataset", String(200)),
    Column("title", String(500), nullable=False),
    Column("category", String(200)),
    Column("description", Text, nullable=False, default=""),
    Column("lon", Float),
    Column("lat", Float),
    Column("district", String(64)),
    Column("grid", String(64)),
    Column("occurred_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("department", String(100), index=True),
    UniqueConstraint("source", "source_id", name="ops_events_source_uq"),
)

HISTORY = Table(
    "ops_history",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), ForeignKey("ops_events.id"), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("by", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("status_from", String(16)),
    Column("status_to", String(16), nullable=False),
    Column("department", String(100)),
    Column("note", Text, nullable=False, default=""),
)

#: Per source dataset, how far the importer has read (`_ingested_at` of the last row taken).
CURSORS = Table(
    "ops_cursors",
    METADATA,
    Column("dataset", String(200), primary_key=True),
    Column("watermark", DateTime, nullable=False),
)

OPERATOR = "operator"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Operations:
    """The events queue of one platform.

    >>> from citybase.meta import open_meta
    >>> from citybase.registry import Principal, Role
    >>> ops = Operations(open_meta("sqlite://"))
    >>> op = Principal("city", Role.ADMIN, "k1")
    >>> e = ops.create(op, NewEvent(title="burst pipe"))
    >>> ops.dispatch(op, e.id, "water").status.value
    'dispatched'
    >>> ops.update(Principal("water", Role.MEMBER, "k2"), e.id, Status.in_progress).status.value
    'in_progress'
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        departments: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """`departments` lists the known department ids, to refuse a dispatch to a typo."""
        self.engine, self.clock, self.departments = engine, clock, departments
        ensure(engine, EVENTS, HISTORY, CURSORS)

    # -- reading ------------------------------------------------------------------------------

    def list(
        self,
        who: Principal,
        *,
        status: Iterable[Status] | None = None,
        department: str | None = None,
        limit: int = 200,
    ) -> list[Event]:
        """The queue as `who` sees it, newest first (without histories)."""
        q = select(EVENTS)
        if not who.is_admin:
            q = q.where(EVENTS.c.department == who.department)
        elif department is not None:
            q = q.where(EVENTS.c.department == department)
        wanted = [s.value for s in status or ()]
        if wanted:
            q = q.where(EVENTS.c.status.in_(wanted))
        q = q.order_by(EVENTS.c.created_at.desc(), EVENTS.c.id.desc()).limit(limit)
        with self.engine.connect() as c:
            return [_event(r._mapping) for r in c.execute(q)]

    def counts(self, who: Principal) -> dict[str, int]:
        """Events per status, as `who` sees them."""
        q = select(EVENTS.c.status, func.count()).group_by(EVENTS.c.status)
        if not who.is_admin:
            q = q.where(EVENTS.c.department == who.department)
        with self.engine.connect() as c:
            got = {str(s): int(n) for s, n in c.execute(q)}
        return {s.value: got.get(s.value, 0) for s in Status}

    def get(self, who: Principal, event_id: str) -> Event:
        """One event with its history; 404 when it is not `who`'s to see."""
        with self.engine.connect() as c:
            return self._get(c, who, event_id, history=True)

    def _get(self, c: Connection, who: Principal, event_id: str, *, history: bool = False) -> Event:
        row = c.execute(select(EVENTS).where(EVENTS.c.id == event_id)).first()
        if row is None or not (who.is_admin or row.department == who.department):
            raise NotFound(f"no event {event_id!r}")
        ev = _event(row._mapping)
        if history:
            hq = select(HISTORY).where(HISTORY.c.event_id == event_id).order_by(HISTORY.c.seq)
            ev.history = [_history(h._mapping) for h in c.execute(hq)]
        return ev

    # -- writing ------------------------------------------------------------------------------

    def create(
        self,
        who: Principal,
        new: NewEvent,
        *,
        source: Source = Source.manual,
        source_id: str | None = None,
        dataset: str | None = None,
    ) -> Event:
        """Put an event in the queue (the operator, or the importer acting for it)."""
        if not who.is_admin:
            raise Forbidden("only the operator enters events")
        with self.engine.begin() as c:
            ev_id = self._insert(c, new, source, source_id, dataset, by=who.department)
            if ev_id is None:
                raise Conflict(f"the {source.value} event {source_id!r} is in the queue already")
            return self._get(c, who, ev_id, history=True)

    def _insert(
        self,
        c: Connection,
        new: NewEvent,
        source: Source,
        source_id: str | None,
        dataset: str | None,
        *,
        by: str,
    ) -> str | None:
        """Insert one event and its `created` entry; None when (source, source_id) exists already."""
        if source_id is not None:
            dup = c.execute(
                select(EVENTS.c.id).where(
                    and_(EVENTS.c.source == source.value, EVENTS.c.source_id == source_id)
                )
            ).first()
            if dup is not None:
                return None
        now = self.clock()
        ev_id = "ev-" + secrets.token_hex(8)
        c.execute(
            insert(EVENTS).values(
                id=ev_id,
                source=source.value,
                source_id=source_id,
                dataset=dataset,
                created_at=now,
                updated_at=now,
                status=Status.requested.value,
                department=None,
                **new.model_dump(),
            )
        )
        self._log(c, ev_id, now, by, "created", None, Status.requested, None, "")
        return ev_id

    def add_many(self, rows: Iterable[tuple[NewEvent, Source, str, str]]) -> int:
        """Import (event, source, source id, dataset) rows as the operator; returns how many were new."""
        added = 0
        with self.engine.begin() as c:
            for new, source, source_id, dataset in rows:
                if self._insert(c, new, source, source_id, dataset, by=OPERATOR) is not None:
                    added += 1
        return added

    def dispatch(self, who: Principal, event_id: str, department: str, note: str = "") -> Event:
        """Hand an event to a department (the operator only)."""
        if not who.is_admin:
            raise Forbidden("only the operator dispatches events")
        if self.departments is not None and department not in set(self.departments()):
            raise InputError(f"no department {department!r}")
        with self.engine.begin() as c:
            ev = self._get(c, who, event_id)
            if ev.status not in DISPATCHABLE:
                raise Conflict(f"a {ev.status.value} event cannot be dispatched; reopen it first")
            self._move(c, ev, who, "dispatched", Status.dispatched, department, note)
            return self._get(c, who, event_id, history=True)

    def update(self, who: Principal, event_id: str, status: Status, note: str = "") -> Event:
        """Move an event along (the department it is dispatched to, or the operator)."""
        with self.engine.begin() as c:
            ev = self._get(c, who, event_id)
            if status not in MOVES[ev.status]:
                allowed = ", ".join(sorted(s.value for s in MOVES[ev.status])) or "none (dispatch it)"
                raise Conflict(f"a {ev.status.value} event cannot become {status.value}; allowed: {allowed}")
            self._move(c, ev, who, "status", status, ev.department, note)
            return self._get(c, who, event_id, history=True)

    def _move(
        self,
        c: Connection,
        ev: Event,
        who: Principal,
        action: str,
        status: Status,
        department: str | None,
        note: str,
    ) -> None:
        now = self.clock()
        c.execute(
            update(EVENTS)
            .where(EVENTS.c.id == ev.id)
            .values(status=status.value, department=department, updated_at=now)
        )
        self._log(c, ev.id, now, who.department, action, ev.status, status, department, note)

    @staticmethod
    def _log(
        c: Connection,
        event_id: str,
        at: datetime,
        by: str,
        action: str,
        old: Status | None,
        new: Status,
        department: str | None,
        note: str,
    ) -> None:
        c.execute(
            insert(HISTORY).values(
                event_id=event_id,
                at=at,
                by=by,
                action=action,
                status_from=None if old is None else old.value,
                status_to=new.value,
                department=department,
                note=note,
            )
        )

    # -- import cursors -----------------------------------------------------------------------

    def watermark(self, dataset: str) -> datetime | None:
        with self.engine.connect() as c:
            row = c.execute(select(CURSORS.c.watermark).where(CURSORS.c.dataset == dataset)).first()
        return None if row is None else row[0]

    def set_watermark(self, dataset: str, at: datetime) -> None:
        with self.engine.begin() as c:
            done = c.execute(update(CURSORS).where(CURSORS.c.dataset == dataset).values(watermark=at))
            if done.rowcount == 0:
                c.execute(insert(CURSORS).values(dataset=dataset, watermark=at))


def _event(m: Any) -> Event:
    return Event(
        id=m["id"],
        source=Source(m["source"]),
        source_id=m["source_id"],
        dataset=m["dataset"],
        title=m["title"],
        category=m["category"],
        description=m["description"] or "",
        lon=m["lon"],
        lat=m["lat"],
        district=m["district"],
        grid=m["grid"],
        occurred_at=m["occurred_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        status=Status(m["status"]),
        department=m["department"],
    )


def _history(m: Any) -> HistoryEntry:
    return HistoryEntry(
        at=m["at"],
        by=m["by"],
        action=m["action"],
        status_from=None if m["status_from"] is None else Status(m["status_from"]),
        status_to=Status(m["status_to"]),
        department=m["department"],
        note=m["note"] or "",
    )
