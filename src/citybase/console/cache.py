"""The map's working copy of a points or tracks dataset: time, position and H3 cell, sorted by time.

Why: a map asks the same question many times a second (every tile of every pan, every step of a
replay), always "these points in this time window, in this box". The lake is laid out for place
(rows sorted by H3 cell within time partitions), so a one-day window reads whole partitions; at
10M points that is 50-500 ms a tile. This copy is a plain DuckDB table in the lake's own in-memory
database (no engine of our own), ordered by time, so DuckDB's zone maps skip everything outside
the window, and a tile or a heat map of a day reads that day only.

It serves only open reads (the provider and the operator): a department reading through a grant's
scope (row filter, masks) reads the lake through its scope, never this copy. It follows the lake:
at most every `REFRESH` seconds it appends the rows ingested since its watermark. It is built in a
background thread on first use; until then, reads go to the lake.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from citybase.model.dataset import Kind
from citybase.model.layout import H3, INGESTED_AT
from citybase.query._sql import literal, quote

if TYPE_CHECKING:
    from citybase.platform import CityBase

log = logging.getLogger("citybase.console")
REFRESH = 2.0
#: Datasets smaller than this are read from the lake directly: the copy would buy nothing.
MIN_ROWS = 200_000


@dataclass
class _Copy:
    table: str
    watermark: datetime | None
    checked: float
    ready: bool = False
    busy: bool = False


class PointCache:
    """Working copies of the map's point datasets, one table each: `relation(dataset)`."""

    def __init__(self, cb: CityBase, *, min_rows: int = MIN_ROWS) -> None:
        self.cb, self.min_rows = cb, min_rows
        self._lock = threading.Lock()
        self._copies: dict[str, _Copy] = {}

    def relation(self, dataset: str) -> str | None:
        """The copy's table name when it is ready (and fresh within REFRESH s), else None."""
        spec = self.cb.datasets.get(dataset)
        if spec is None or spec.kind not in (Kind.points, Kind.tracks) or spec.time_field is None:
            return None
        with self._lock:
            copy = self._copies.get(dataset)
            if copy is None:
                copy = _Copy(f"memory.main.{quote('console_' + dataset)}", None, time.monotonic())
                self._copies[dataset] = copy
                threading.Thread(target=self._build, args=(dataset, copy), daemon=True).start()
                return None
            if not copy.ready:
                return None
            due = not copy.busy and time.monotonic() - copy.checked >= REFRESH
            if due:
                copy.checked, copy.busy = time.monotonic(), True
        if due:
            try:
                self._append(dataset, copy)
            finally:
                copy.busy = False
        return copy.table

    def _columns(self, dataset: str) -> str:
        spec = self.cb.datasets[dataset]
        cols = [quote(spec.time_field or "ts"), "lon", "lat", quote(H3), quote(INGESTED_AT)]
        if spec.object_field:
            cols.append(quote(spec.object_field))
        return ", ".join(cols)

    def _build(self, dataset: str, copy: _Copy) -> None:
        try:
            spec = self.cb.datasets[dataset]
            lake = self.cb.lake.table(dataset)
            rows = self.cb.sql(f"SELECT count(*) FROM {lake}").column(0)[0].as_py()
            if rows < self.min_rows:
                return  # stays not ready: the lake answers small datasets as fast
            t = time.perf_counter()
            mark = self.cb.sql(f"SELECT max({quote(INGESTED_AT)}) FROM {lake}").column(0)[0].as_py()
            tf = quote(spec.time_field or "ts")
            self.cb.sql(
                f"CREATE OR REPLACE TABLE {copy.table} AS SELECT {self._columns(dataset)} FROM {lake} "
                f"WHERE lon IS NOT NULL AND {quote(INGESTED_AT)} <= {literal(mark)} ORDER BY {tf}"
            )
            copy.watermark, copy.checked, copy.ready = mark, time.monotonic(), True
            log.info("map copy of %s: %s rows in %.1f s", dataset, rows, time.perf_counter() - t)
        except Exception:  # the map keeps reading the lake; the log says why the copy is missing
            log.exception("could not build the map copy of %s", dataset)

    def _append(self, dataset: str, copy: _Copy) -> None:
        lake = self.cb.lake.table(dataset)
        ing = quote(INGESTED_AT)
        mark = self.cb.sql(f"SELECT max({ing}) FROM {lake}").column(0)[0].as_py()
        if mark is None or (copy.watermark is not None and mark <= copy.watermark):
            return
        since = f" AND {ing} > {literal(copy.watermark)}" if copy.watermark is not None else ""
        self.cb.sql(
            f"INSERT INTO {copy.table} SELECT {self._columns(dataset)} FROM {lake} "
            f"WHERE lon IS NOT NULL AND {ing} <= {literal(mark)}{since}"
        )
        copy.watermark = mark


def point_cache(state: object) -> PointCache:
    """The app's cache (one per app, made on first use)."""
    cache = getattr(state, "console_points", None)
    if not isinstance(cache, PointCache):
        cache = PointCache(state.cb)  # type: ignore[attr-defined]
        state.console_points = cache  # type: ignore[attr-defined]
    return cache
