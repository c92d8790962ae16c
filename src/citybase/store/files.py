"""Reading a dataset's Parquet files directly, when they hold exactly its rows.

Through DuckLake, every query first asks the catalog for the snapshot, the table and its files
(in the embedded deployment, SQLite queries through DuckDB's sqlite scanner: measured ~20 ms of a
35 ms nearest-neighbour query at 10M rows). The files themselves are immutable, so for the
latency-critical queries (B4) the engine reads them with `read_parquet`, reusing their parsed
footers, and asks the catalog one cheap question per query: has the lake changed?

Used only while the files are the whole truth: no delete files, and no rows DuckLake keeps inlined
in its catalog (small inserts), which shows as the table's row count differing from the files'.
Checked again after every commit to the lake; otherwise the query reads through DuckLake.

The footers also bound a column over every row of the files (`DirectScan.span`): a reader's time
window that holds the whole span need not be tested row by row (query/core.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb

from citybase.sqltext import literal
from citybase.store.lake import Lake

#: Per column, per file: the least and greatest value in its footers (None: not known for every row).
Bounds = dict[str, tuple[object, object] | None]


@dataclass
class DirectScan:
    """The complete files of one dataset at one snapshot (or those of them a query may need)."""

    dataset: str
    files: tuple[str, ...]
    #: Column -> per-file bounds, shared by the subsets of one snapshot's files and carried over
    #: to the next snapshot's scan for the files it still has (files are immutable): a commit
    #: reads the footers of its new files only.
    _bounds: dict[str, Bounds] = field(default_factory=dict, repr=False)

    @property
    def sql(self) -> str:
        """The files as one relation."""
        return f"read_parquet([{', '.join(literal(f) for f in self.files)}], hive_partitioning = false)"

    def bounds(self, cur: duckdb.DuckDBPyConnection, column: str, sql_type: str = "TIMESTAMP") -> Bounds:
        """Per file, the least and greatest value of a column, from the footers of its row groups;
        None for a file where a row group has no statistics or a null in the column."""
        known = self._bounds.setdefault(column, {})
        missing = [f for f in self.files if f not in known]
        if missing:
            rows = cur.execute(
                "SELECT file_name, bool_and(coalesce(stats_min_value IS NOT NULL AND stats_max_value "
                "IS NOT NULL AND stats_null_count = 0, false)), "
                f"min(TRY_CAST(stats_min_value AS {sql_type})), max(TRY_CAST(stats_max_value AS {sql_type})) "
                f"FROM parquet_metadata([{', '.join(literal(f) for f in missing)}]) "
                "WHERE path_in_schema = ? GROUP BY file_name",
                [column],
            ).fetchall()
            got: Bounds = dict.fromkeys(missing)
            for name, ok, lo, hi in rows:
                got[name] = (lo, hi) if ok and lo is not None and hi is not None else None
            known.update(got)
        return known

    def carried(self, files: tuple[str, ...]) -> DirectScan:
        """A scan of `files` (this dataset at a later snapshot) that keeps the bounds read so far
        of the files it still has."""
        keep = set(files)
        bounds = {c: {f: b for f, b in per.items() if f in keep} for c, per in self._bounds.items()}
        return DirectScan(self.dataset, files, bounds)

    def span(self, cur: duckdb.DuckDBPyConnection, column: str) -> tuple[datetime, datetime] | None:
        """The earliest and latest value of a time column over every row of the files, from their
        footers; None when a row group has no statistics or a null in it (then nothing is implied).
        """
        per_file = self.bounds(cur, column)
        spans = [per_file.get(f) for f in self.files]
        if not spans or any(b is None or not isinstance(b[0], date) for b in spans):
            return None
        return (
            min(_moment(b[0]) for b in spans if b is not None),  # type: ignore[arg-type]
            max(_moment(b[1]) for b in spans if b is not None),  # type: ignore[arg-type]
        )

    def subset(
        self,
        cur: duckdb.DuckDBPyConnection,
        box: tuple[float, float, float, float] | None = None,
        time: tuple[str, datetime | None, datetime | None] | None = None,
    ) -> DirectScan:
        """The files that may hold a row with lon/lat in `box` and its time column in [t0, t1).

        A dataset partitioned by cell (`partition_cells`) has files disjoint in space, so a place
        query opens the few files of its cells: DuckDB spends ~20 µs on every row group of every
        file it is given, pruned or not. At least one file is kept (a relation needs one).
        """
        keep = list(self.files)
        if box is not None:
            lon, lat = self.bounds(cur, "lon", "DOUBLE"), self.bounds(cur, "lat", "DOUBLE")
            keep = [f for f in keep if _meets(lon[f], box[0], box[2]) and _meets(lat[f], box[1], box[3])]
        if time is not None and (time[1] is not None or time[2] is not None):
            per_file, t0, t1 = self.bounds(cur, time[0]), time[1], time[2]
            keep = [f for f in keep if _in_window(per_file[f], t0, t1)]
        if len(keep) == len(self.files):
            return self
        return DirectScan(self.dataset, tuple(keep) or self.files[:1], self._bounds)


def _meets(bounds: tuple[object, object] | None, lo: float, hi: float) -> bool:
    if bounds is None:
        return True
    fmin, fmax = bounds
    return not (isinstance(fmin, float) and isinstance(fmax, float)) or (fmax >= lo and fmin <= hi)


def _in_window(bounds: tuple[object, object] | None, t0: datetime | None, t1: datetime | None) -> bool:
    """Whether a file's time bounds meet [t0, t1); a date is taken as its midnight (a date is in
    the window when its midnight is, as query/core.py's `time_where` reads dates)."""
    if bounds is None or not isinstance(bounds[0], date) or not isinstance(bounds[1], date):
        return True
    return (t0 is None or _moment(bounds[1]) >= t0) and (t1 is None or _moment(bounds[0]) < t1)


class DirectFiles:
    """Per dataset, the live Parquet files of the lake's current snapshot, when they are complete."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._cache: dict[str, tuple[int, DirectScan | None]] = {}
        self._lock = threading.Lock()

    def scan(self, cur: duckdb.DuckDBPyConnection, dataset: str) -> DirectScan | None:
        """The dataset's files at the current snapshot, or None when DuckLake must be read."""
        snap = self.lake.snapshot(cur)
        with self._lock:
            hit = self._cache.get(dataset)
        if hit is not None and hit[0] == snap:
            return hit[1]
        files = self._complete_files(cur, dataset)
        old = hit[1] if hit is not None else None
        if not files:
            scan = None
        else:
            scan = old.carried(tuple(files)) if old is not None else DirectScan(dataset, tuple(files))
        # Cache only what provably belongs to `snap`: no commit happened while checking.
        if self.lake.snapshot(cur) == snap:
            with self._lock:
                self._cache[dataset] = (snap, scan)
        return scan

    def forget(self, dataset: str) -> None:
        with self._lock:
            self._cache.pop(dataset, None)

    def _complete_files(self, cur: duckdb.DuckDBPyConnection, dataset: str) -> list[str] | None:
        pairs = self.lake.data_files(dataset)
        if not pairs or any(d is not None for _, d in pairs):
            return None
        files = [f for f, _ in pairs]
        row = cur.execute(f"SELECT count(*) FROM {self.lake.table(dataset)}").fetchone()
        in_files = cur.execute(
            f"SELECT sum(num_rows) FROM parquet_file_metadata([{', '.join(literal(f) for f in files)}])"
        ).fetchone()
        if not row or not in_files or int(row[0]) != int(in_files[0] or 0):
            return None  # rows inlined in the catalog, or files and table disagree: read DuckLake
        return files


def _moment(value: date) -> datetime:
    """A footer's timestamp or date as a naive (UTC) datetime."""
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
