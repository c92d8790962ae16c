"""The platform's figures for the console: systems, datasets, records, records today, uses, ingest.

The counted figures come from the share box's `stats` (registry, lake statistics, usage); the live
ones from the server: the ingest lag and the rows waiting in the append log (the log itself), and
the ingest rate, from the server's counter of accepted rows sampled at each call. They are cached
for `TTL` seconds: every open console polls them, and the totals need a pass over the lake's
statistics.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from pydantic import BaseModel

from citybase.share.stats import DayCount

TTL = 2.0


class Figures(BaseModel):
    systems_connected: int
    departments: int
    datasets: int
    total_records: int
    records_today: int
    data_uses: int
    ingest_rows_per_s: float
    ingest_lag_s: float
    pending_rows: int
    new_records_per_day: list[DayCount]
    data_uses_per_day: list[DayCount]


class FigureSource:
    """Computes `Figures` for one app, with a short cache and a window of counter samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, Figures] | None = None
        self._samples: deque[tuple[float, float]] = deque(maxlen=30)

    def get(self, state: Any) -> Figures:
        from citybase.console.access import sharing

        now = time.monotonic()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < TTL:
                return self._cached[1]
        cb = state.cb
        stats = sharing(state).stats(14)
        rate = self._rate(now, _ingested(state))
        figs = Figures(
            systems_connected=stats.systems_connected,
            departments=stats.departments,
            datasets=stats.datasets,
            total_records=stats.total_records,
            records_today=stats.new_records_per_day[-1].count if stats.new_records_per_day else 0,
            data_uses=stats.data_uses,
            ingest_rows_per_s=rate,
            ingest_lag_s=float(cb.log.oldest_age()),
            pending_rows=int(cb.log.pending()[1]),
            new_records_per_day=stats.new_records_per_day,
            data_uses_per_day=stats.data_uses_per_day,
        )
        with self._lock:
            self._cached = (now, figs)
        return figs

    def _rate(self, now: float, total: float) -> float:
        """Rows per second over the sampled window (up to about a minute of polling)."""
        with self._lock:
            self._samples.append((now, total))
            t0, n0 = self._samples[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


def _ingested(state: Any) -> float:
    """Rows the server has accepted since it started (its `citybase_ingest_rows_total`)."""
    metrics = getattr(state, "metrics", None)
    if metrics is None:
        return 0.0
    total = 0.0
    for m in metrics.ingested.collect():
        for s in m.samples:
            if s.name.endswith("_total"):
                total += s.value
    return total
