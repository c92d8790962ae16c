"""Row counts, spatial and temporal coverage and last update of every dataset, from lake statistics.

DuckLake keeps per-table record counts and per-column min/max in its catalog, so the whole
catalog's coverage is one metadata query, not a scan of 18 billion rows. The answer is cached
until the lake's next commit (its snapshot id changes). Where those statistics cannot be read (an
older catalog layout), one aggregate query per dataset stands in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from citybase.model.dataset import DatasetSpec
from citybase.model.layout import INGESTED_AT, stores_shape
from citybase.query._sql import quote
from citybase.store.lake import CATALOG, Lake


@dataclass(frozen=True)
class Coverage:
    """What a dataset holds, as statistics say (bounds can be wider than the rows after deletes)."""

    rows: int = 0
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    last_update: datetime | None = None


def _time(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    try:
        return datetime.fromisoformat(str(v))
    except ValueError:
        return None


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except ValueError:
        return None


def _bbox_columns(spec: DatasetSpec) -> tuple[str, str, str, str] | None:
    if stores_shape(spec):
        return ("xmin", "ymin", "xmax", "ymax")
    if spec.located or spec.address_field:
        return ("lon", "lat", "lon", "lat")
    return None


def _assemble(spec: DatasetSpec, rows: int, lo: dict[str, Any], hi: dict[str, Any]) -> Coverage:
    box = None
    cols = _bbox_columns(spec)
    if cols is not None:
        vals = [
            _float(lo.get(cols[0])),
            _float(lo.get(cols[1])),
            _float(hi.get(cols[2])),
            _float(hi.get(cols[3])),
        ]
        if all(v is not None for v in vals):
            x0, y0, x1, y1 = (float(v) for v in vals if v is not None)
            box = (x0, y0, x1, y1)
    tf = spec.time_field
    return Coverage(
        rows=rows,
        bbox=box,
        start=_time(lo.get(tf)) if tf else None,
        end=_time(hi.get(tf)) if tf else None,
        last_update=_time(hi.get(INGESTED_AT)),
    )


class CoverageCache:
    """Coverage of every dataset, recomputed only after the lake changes."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._lock = threading.Lock()
        self._at: int | None = None
        self._value: dict[str, Coverage] = {}

    def get(self) -> dict[str, Coverage]:
        snap = self.lake.snapshot()
        with self._lock:
            if self._at != snap:
                self._value, self._at = self._compute(), snap
            return dict(self._value)

    def _compute(self) -> dict[str, Coverage]:
        specs = self.lake.datasets
        try:
            return self._from_stats(specs)
        except duckdb.Error:
            return {name: self._scan(spec) for name, spec in specs.items()}

    def _from_stats(self, specs: dict[str, DatasetSpec]) -> dict[str, Coverage]:
        m = f"__ducklake_metadata_{CATALOG}"
        cur = self.lake.cursor()
        try:
            counts = dict(
                cur.execute(
                    f"SELECT t.table_name, s.record_count FROM {m}.ducklake_table t "
                    f"JOIN {m}.ducklake_table_stats s USING (table_id) WHERE t.end_snapshot IS NULL"
                ).fetchall()
            )
            stats = cur.execute(
                f"SELECT t.table_name, c.column_name, cs.min_value, cs.max_value "
                f"FROM {m}.ducklake_table t "
                f"JOIN {m}.ducklake_column c ON c.table_id = t.table_id AND c.end_snapshot IS NULL "
                f"JOIN {m}.ducklake_table_column_stats cs "
                f"  ON cs.table_id = t.table_id AND cs.column_id = c.column_id "
                f"WHERE t.end_snapshot IS NULL"
            ).fetchall()
        finally:
            cur.close()
        lo: dict[str, dict[str, Any]] = {}
        hi: dict[str, dict[str, Any]] = {}
        for table, column, vmin, vmax in stats:
            lo.setdefault(table, {})[column] = vmin
            hi.setdefault(table, {})[column] = vmax
        return {
            name: _assemble(spec, int(counts.get(name) or 0), lo.get(name, {}), hi.get(name, {}))
            for name, spec in specs.items()
        }

    def _scan(self, spec: DatasetSpec) -> Coverage:
        cols = {c for c in (*(_bbox_columns(spec) or ()), spec.time_field, INGESTED_AT) if c}
        items = ["count(*)"] + [f"min({quote(c)}), max({quote(c)})" for c in sorted(cols)]
        cur = self.lake.cursor()
        try:
            row = cur.execute(f"SELECT {', '.join(items)} FROM {self.lake.table(spec.name)}").fetchone()
        finally:
            cur.close()
        assert row is not None
        lo = {c: row[1 + 2 * i] for i, c in enumerate(sorted(cols))}
        hi = {c: row[2 + 2 * i] for i, c in enumerate(sorted(cols))}
        return _assemble(spec, int(row[0]), lo, hi)
