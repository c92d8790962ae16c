"""Access requests and grants: one record per request, moved along a small state machine.

    requested --approve / narrow--> approved --revoke--> revoked
        |                              |
        +--refuse--> refused           +--(clock passes expires_at)--> expired

`refused`, `revoked` and `expired` are final. Every move is a compare-and-set on the stored
state (`UPDATE ... WHERE id = ? AND state = ?`), so two deciders racing cannot both win, and an
illegal move is a `Conflict` (HTTP 409). Every move is written to an event table (who, when, from,
to, why) and handed to the ledger hook (`on_fact("grant" | "refuse" | "revoke" | "expire", ...)`).

A grant is never cached: `active` reads the store on each call, so a revocation holds at once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)

from citybase.errors import Conflict, InputError, NotFound
from citybase.meta import METADATA, ensure
from citybase.share.scope import RowFilter

Fact = Callable[[str, dict[str, Any]], object]

#: The longest a grant may run, whatever is asked.
MAX_DAYS = 3650


class State(StrEnum):
    requested = "requested"
    approved = "approved"
    refused = "refused"
    revoked = "revoked"
    expired = "expired"


#: state -> the states it may move to.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.requested: frozenset({State.approved, State.refused}),
    State.approved: frozenset({State.revoked, State.expired}),
    State.refused: frozenset(),
    State.revoked: frozenset(),
    State.expired: frozenset(),
}

#: The ledger's kind for each move (`grant`, `revoke` and `use` are the ledger's own kinds).
FACT_KINDS: dict[State, str] = {
    State.requested: "request",
    State.approved: "grant",
    State.refused: "refuse",
    State.revoked: "revoke",
    State.expired: "expire",
}

requests_table = Table(
    "share_requests",
    METADATA,
    Column("id", String(32), primary_key=True),
    Column("dataset", String(63), nullable=False, index=True),
    Column("consumer", String(63), nullable=False, index=True),
    Column("provider", String(63), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("purpose", Text, nullable=False),
    Column("fields", Text, nullable=True),  # JSON list; NULL = every field
    Column("row_filter", Text, nullable=True),  # JSON RowFilter asked for
    Column("days", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(16), nullable=False),
    Column("granted_fields", Text, nullable=True),
    Column("granted_filter", Text, nullable=True),
    Column("unmasked", Text, nullable=False, default="[]"),
    Column("narrowed", Boolean, nullable=False, default=False),
    Column("decided_at", DateTime, nullable=True),
    Column("decided_by", String(63), nullable=True),
    Column("expires_at", DateTime, nullable=True),
    Column("ended_at", DateTime, nullable=True),
    Column("reason", Text, nullable=False, default=""),
)
events_table = Table(
    "share_request_events",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("request", String(32), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("by", String(63), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("note", Text, nullable=False, default=""),
)


class AccessRequest(BaseModel):
    """A request and, once approved, the grant it became."""

    model_config = ConfigDict(extra="forbid")

    id: str
    dataset: str
    consumer: str
    provider: str
    state: State
    purpose: str
    fields: list[str] | None = None
    row_filter: RowFilter | None = None
    days: int
    created_at: datetime
    granted_fields: list[str] | None = None
    granted_filter: RowFilter | None = None
    unmasked: list[str] = Field(default_factory=list)
    narrowed: bool = False
    decided_at: datetime | None = None
    decided_by: str | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""

    @property
    def effective_fields(self) -> list[str] | None:
        """What the grant shows: the provider's narrowing, else what was asked."""
        return self.granted_fields if self.granted_fields is not None else self.fields

    def live(self, now: datetime) -> bool:
        return self.state is State.approved and (self.expires_at is None or now < self.expires_at)


class Decision(BaseModel):
    """A provider's answer to a request: approve, narrow (approve with less) or refuse."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern="^(approve|narrow|refuse)$")
    #: Narrowing: a subset of the fields asked for.
    fields: list[str] | None = None
    #: Narrowing: a filter ANDed with the one asked for (e.g. one district).
    row_filter: RowFilter | None = None
    #: Narrowing: fewer days than asked for.
    days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    #: Personal fields the consumer may see unmasked (a legal basis is the provider's to judge).
    unmasked: list[str] = Field(default_factory=list)
    reason: str = ""


def _dump(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, BaseModel):
        return v.model_dump_json(exclude_defaults=True)
    return json.dumps(v, ensure_ascii=False)


def _filter(v: str | None) -> RowFilter | None:
    return RowFilter.model_validate_json(v) if v else None


def _list(v: str | None) -> list[str] | None:
    return list(json.loads(v)) if v else None


class Grants:
    """The request and grant store over the metadata database."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], on_fact: Fact | None = None) -> None:
        self.engine, self.clock, self.on_fact = engine, clock, on_fact
        ensure(engine, requests_table, events_table)

    # -- reading ------------------------------------------------------------------------------

    def get(self, request_id: str) -> AccessRequest:
        with self.engine.connect() as c:
            row = c.execute(select(requests_table).where(requests_table.c.id == request_id)).first()
        if row is None:
            raise NotFound(f"no access request {request_id!r}")
        return self._model(row._mapping)

    def find(
        self,
        *,
        consumer: str | None = None,
        provider: str | None = None,
        dataset: str | None = None,
        state: State | None = None,
    ) -> list[AccessRequest]:
        """Requests matching every given criterion, oldest first (expired ones marked so first)."""
        self.expire_due()
        t = requests_table
        q = select(t).order_by(t.c.created_at, t.c.id)
        for col, v in ((t.c.consumer, consumer), (t.c.provider, provider), (t.c.dataset, dataset)):
            if v is not None:
                q = q.where(col == v)
        if state is not None:
            q = q.where(t.c.state == state.value)
        with self.engine.connect() as c:
            return [self._model(r._mapping) for r in c.execute(q).all()]

    def involving(self, department: str) -> list[AccessRequest]:
        """Requests a department made or must answer."""
        self.expire_due()
        t = requests_table
        q = select(t).where(or_(t.c.consumer == department, t.c.provider == department))
        with self.engine.connect() as c:
            return [self._model(r._mapping) for r in c.execute(q.order_by(t.c.created_at, t.c.id)).all()]

    def active(self, consumer: str, dataset: str) -> AccessRequest | None:
        """The consumer's live grant on the dataset (the latest approved one), read fresh each time."""
        t = requests_table
        q = (
            select(t)
            .where(t.c.consumer == consumer, t.c.dataset == dataset, t.c.state == State.approved.value)
            .order_by(t.c.decided_at.desc(), t.c.id)
        )
        with self.engine.connect() as c:
            rows = [self._model(r._mapping) for r in c.execute(q).all()]
        now = self.clock()
        for r in rows:
            if r.live(now):
                return r
            self._expire(r)
        return None

    # -- moves --------------------------------------------------------------------------------

    def create(
        self,
        *,
        dataset: str,
        consumer: str,
        provider: str,
        purpose: str,
        fields: list[str] | None,
        row_filter: RowFilter | None,
        days: int,
        by: str,
    ) -> AccessRequest:
        if not 1 <= days <= MAX_DAYS:
            raise InputError(f"a grant runs 1..{MAX_DAYS} days, not {days}")
        if not purpose.strip():
            raise InputError("a request states its purpose")
        now = self.clock()
        rid = uuid.uuid4().hex
        values = dict(
            id=rid,
            dataset=dataset,
            consumer=consumer,
            provider=provider,
            state=State.requested.value,
            purpose=purpose,
            fields=_dump(fields),
            row_filter=_dump(row_filter if row_filter is not None and not row_filter.empty else None),
            days=days,
            created_at=now,
            created_by=by,
            unmasked="[]",
            narrowed=False,
            reason="",
        )
        with self.engine.begin() as c:
            c.execute(insert(requests_table).values(**values))
            c.execute(
                insert(events_table).values(
                    request=rid, at=now, by=by, from_state=None, to_state=State.requested.value, note=purpose
                )
            )
        return self.get(rid)

    def move(
        self, request_id: str, to: State, *, by: str, note: str = "", values: dict[str, Any] | None = None
    ) -> AccessRequest:
        """Move a request to `to` if that is legal from its current state; else Conflict (409)."""
        cur = self.get(request_id)
        if to not in TRANSITIONS[cur.state]:
            raise Conflict(f"access request {request_id} is {cur.state.value}; it cannot become {to.value}")
        now = self.clock()
        t = requests_table
        with self.engine.begin() as c:
            n = c.execute(
                update(t)
                .where(and_(t.c.id == request_id, t.c.state == cur.state.value))
                .values(state=to.value, **(values or {}))
            ).rowcount
            if n != 1:
                raise Conflict(f"access request {request_id} changed meanwhile; read it again")
            c.execute(
                insert(events_table).values(
                    request=request_id,
                    at=now,
                    by=by,
                    from_state=cur.state.value,
                    to_state=to.value,
                    note=note,
                )
            )
        after = self.get(request_id)
        if self.on_fact is not None:
            self.on_fact(FACT_KINDS[to], _fact(after, by, note))
        return after

    def decide(self, request_id: str, d: Decision, *, by: str) -> AccessRequest:
        """Refuse, or approve as asked or narrowed by `d` (fewer fields, a filter, fewer days)."""
        cur = self.get(request_id)
        to = State.refused if d.action == "refuse" else State.approved
        if to not in TRANSITIONS[cur.state]:  # before judging the narrowing: the state decides first
            raise Conflict(f"access request {request_id} is {cur.state.value}; it cannot become {to.value}")
        if d.action == "refuse":
            return self.move(
                request_id,
                State.refused,
                by=by,
                note=d.reason,
                values={"reason": d.reason, "decided_at": self.clock(), "decided_by": by},
            )
        asked = cur.fields
        fields = d.fields
        if fields is not None and asked is not None and not set(fields) <= set(asked):
            raise InputError(f"a narrowing grants a subset of the fields asked for ({asked}), not {fields}")
        days = d.days or cur.days
        if days > cur.days:
            raise InputError(f"a narrowing grants at most the {cur.days} days asked for, not {days}")
        narrowed = d.action == "narrow" or fields is not None or d.row_filter is not None or days < cur.days
        now = self.clock()
        values = dict(
            granted_fields=_dump(fields),
            granted_filter=_dump(
                d.row_filter if d.row_filter is not None and not d.row_filter.empty else None
            ),
            unmasked=json.dumps(sorted(set(d.unmasked))),
            narrowed=narrowed,
            decided_at=now,
            decided_by=by,
            expires_at=now + timedelta(days=days),
            reason=d.reason,
        )
        return self.move(request_id, State.approved, by=by, note=d.reason or d.action, values=values)

    def revoke(self, request_id: str, *, by: str, reason: str = "") -> AccessRequest:
        return self.move(
            request_id, State.revoked, by=by, note=reason, values={"ended_at": self.clock(), "reason": reason}
        )

    def expire_due(self) -> int:
        """Mark every approved grant whose time is up as expired; returns how many."""
        t = requests_table
        now = self.clock()
        q = select(t).where(t.c.state == State.approved.value, t.c.expires_at <= now)
        with self.engine.connect() as c:
            due = [self._model(r._mapping) for r in c.execute(q).all()]
        for r in due:
            self._expire(r)
        return len(due)

    def _expire(self, r: AccessRequest) -> None:
        # Another reader may have expired it (or its provider revoked it) first.
        with contextlib.suppress(Conflict):
            self.move(
                r.id, State.expired, by="platform", note="time is up", values={"ended_at": r.expires_at}
            )

    @staticmethod
    def _model(m: Any) -> AccessRequest:
        return AccessRequest(
            id=m["id"],
            dataset=m["dataset"],
            consumer=m["consumer"],
            provider=m["provider"],
            state=State(m["state"]),
            purpose=m["purpose"],
            fields=_list(m["fields"]),
            row_filter=_filter(m["row_filter"]),
            days=m["days"],
            created_at=m["created_at"],
            granted_fields=_list(m["granted_fields"]),
            granted_filter=_filter(m["granted_filter"]),
            unmasked=_list(m["unmasked"]) or [],
            narrowed=bool(m["narrowed"]),
            decided_at=m["decided_at"],
            decided_by=m["decided_by"],
            expires_at=m["expires_at"],
            ended_at=m["ended_at"],
            reason=m["reason"] or "",
        )


def _fact(r: AccessRequest, by: str, note: str) -> dict[str, Any]:
    """What the ledger records of a move: who gave whom what, until when."""
    return {
        "request": r.id,
        "dataset": r.dataset,
        "consumer": r.consumer,
        "provider": r.provider,
        "state": r.state.value,
        "by": by,
        "note": note,
        "fields": r.effective_fields,
        "row_filter": r.granted_filter.model_dump(mode="json") if r.granted_filter else None,
        "unmasked": r.unmasked,
        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
        "at": (r.ended_at or r.decided_at or r.created_at).isoformat(),
    }
