"""Usage metering: every use of a data resource counted, cheaply.

A use (consumer, dataset, query kind, rows returned, purpose, time) is appended to an in-memory
buffer; the buffer is written every `batch` uses or `interval` seconds, and on `flush`/`close`.
A write folds the batch into per-day counters — (day, consumer, dataset, kind, purpose) -> uses,
rows — with one multi-row upsert, so 93 million uses a year become a few thousand rows a day and
the summaries the city reports read those counters, never a raw log. The individual uses of the
batch go, once, to the ledger hook as `on_fact("use", {...})` facts, each carrying a run of uses
in columns (`at`, `consumer`, `dataset`, `kind`, `rows`, `purpose`) and kept under the ledger's
entry size (64 KiB), so that every use stays verifiable at a few bytes each.

Trade-off: a crash loses at most the unflushed batch from the counters (the ledger hook sees a
batch only once it is written).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Date, Engine, String, Table, func, select

from citybase.errors import InputError
from citybase.meta import METADATA, ensure
from citybase.share._sql import upsert_add

Fact = Callable[[str, dict[str, Any]], object]
DIMENSIONS = ("day", "consumer", "dataset", "kind", "purpose")

usage_table = Table(
    "share_usage_daily",
    METADATA,
    Column("day", Date, primary_key=True),
    Column("consumer", String(63), primary_key=True),
    Column("dataset", String(63), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("purpose", String(255), primary_key=True),
    Column("uses", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Use:
    at: datetime
    consumer: str
    dataset: str
    kind: str
    rows: int
    purpose: str


class UsageRow(BaseModel):
    """One line of a usage summary: the grouping values, then the sums."""

    day: date | None = None
    consumer: str | None = None
    dataset: str | None = None
    kind: str | None = None
    purpose: str | None = None
    uses: int
    rows: int


class Usage:
    """The meter. Thread-safe; `record` costs an append, the database is written per batch."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        on_fact: Fact | None = None,
        *,
        batch: int = 1000,
        interval: float = 5.0,
    ) -> None:
        self.engine, self.clock, self.on_fact = engine, clock, on_fact
        self.batch, self.interval = batch, interval
        self._buf: list[Use] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._last = time.monotonic()
        ensure(engine, usage_table)

    def record(self, consumer: str, dataset: str, kind: str, rows: int, purpose: str = "") -> None:
        use = Use(self.clock(), consumer, dataset, kind, int(rows), purpose[:255])
        with self._lock:
            self._buf.append(use)
            due = len(self._buf) >= self.batch or time.monotonic() - self._last >= self.interval
        if due:
            self.flush()

    def pending(self) -> int:
        with self._lock:
            return len(self._buf)

    def flush(self) -> int:
        """Write the buffered uses; returns how many."""
        with self._write_lock:
            with self._lock:
                buf, self._buf = self._buf, []
                self._last = time.monotonic()
            if not buf:
                return 0
            uses: Counter[tuple[date, str, str, str, str]] = Counter()
            rows: Counter[tuple[date, str, str, str, str]] = Counter()
            for u in buf:
                key = (u.at.date(), u.consumer, u.dataset, u.kind, u.purpose)
                uses[key] += 1
                rows[key] += u.rows
            values = [dict(zip(DIMENSIONS, k, strict=True), uses=n, rows=rows[k]) for k, n in uses.items()]
            with self.engine.begin() as c:
                upsert_add(c, usage_table, values, list(DIMENSIONS), ["uses", "rows"])
            if self.on_fact is not None:
                for chunk in _chunks(buf):
                    self.on_fact("use", _columns(chunk))
            return len(buf)

    def summary(
        self,
        by: Iterable[str] = ("dataset",),
        *,
        consumers: Iterable[str] | None = None,
        datasets: Iterable[str] | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> list[UsageRow]:
        """Uses and rows grouped by `by` (day, consumer, dataset, kind, purpose), in [start, end)."""
        self.flush()
        dims = list(dict.fromkeys(by))
        bad = [d for d in dims if d not in DIMENSIONS]
        if bad:
            raise InputError(f"cannot group usage by {bad}; use {', '.join(DIMENSIONS)}")
        t = usage_table
        cols = [t.c[d] for d in dims]
        q = select(*cols, func.sum(t.c.uses).label("uses"), func.sum(t.c.rows).label("rows"))
        if consumers is not None:
            q = q.where(t.c.consumer.in_(list(consumers)))
        if datasets is not None:
            q = q.where(t.c.dataset.in_(list(datasets)))
        if start is not None:
            q = q.where(t.c.day >= start)
        if end is not None:
            q = q.where(t.c.day < end)
        if cols:
            q = q.group_by(*cols).order_by(*cols)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [
            UsageRow(**{d: r._mapping[d] for d in dims}, uses=int(r.uses or 0), rows=int(r.rows or 0))
            for r in rows
            if r.uses is not None
        ]


#: Bytes of use data per ledger fact: under the ledger's 64 KiB entry, with room for the envelope.
FACT_BYTES = 48_000


def _size(u: Use) -> int:
    # JSON length of the use's values (UTF-8), plus quotes and separators.
    text = u.consumer + u.dataset + u.kind + u.purpose
    return len(text.encode()) + 60


def _chunks(uses: list[Use]) -> list[list[Use]]:
    out: list[list[Use]] = [[]]
    size = 0
    for u in uses:
        n = _size(u)
        if out[-1] and size + n > FACT_BYTES:
            out.append([])
            size = 0
        out[-1].append(u)
        size += n
    return out


def _columns(uses: list[Use]) -> dict[str, Any]:
    """A run of uses as one fact, in columns."""
    return {
        "count": len(uses),
        "at": [u.at.isoformat() for u in uses],
        "consumer": [u.consumer for u in uses],
        "dataset": [u.dataset for u in uses],
        "kind": [u.kind for u in uses],
        "rows": [u.rows for u in uses],
        "purpose": [u.purpose for u in uses],
    }
