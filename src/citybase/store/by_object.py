"""A second copy of a dataset's rows, sorted by day, object and time: for one object's track (B3)
and every object's trips over a window (B7).

The lake sorts a dataset's rows by place (H3 cell) within each time partition, which is what makes
place queries fast; but then one vehicle's points of one day lie scattered over every file and
row group of the partition, and its track reads the whole partition (236 ms at 100M points in
month partitions split by cell, where DuckDB over a file written object by object took 24 ms).
A copy sorted by (day, object, time), in small files, gives each file a few days and each row
group one day and a narrow range of objects: a track opens the files of its object and days and
reads a row group or two a day; the trips of a day read that day's row groups (docs/adr/0010).

The copy is derived, never written by a load or a flush: maintenance (`refresh`) appends the rows
inserted since the snapshot it last covered, from DuckLake's change feed, and records that
snapshot in `citybase_copies` in the same commit, and builds it again whole, beside the copy in
use, once those appends outgrow it (`REBUILD_SHARE`). A reader at snapshot S reads the copy as of S
and the rows inserted after the copy's mark up to S (`Copies.relation`): the same rows as the table,
however stale the copy. Datasets are append-only; a dataset declared anew drops its copy
(`Lake.create_dataset`).
"""

from __future__ import annotations

import itertools
import math
import threading

import duckdb

from citybase.model.dataset import DatasetSpec
from citybase.sqltext import literal, quote
from citybase.store.lake import CATALOG, COPIES, Lake

__all__ = ["Copies", "keeps_copy", "refresh"]

#: Rows a whole build sorts at a time: one slice of the objects' range, sorted, written, then the
#: next, so that memory stays bounded. Each slice is a scan of the whole table. 100M points: in one
#: sort, peak RSS 9.9 GB; in 8M-row slices, 74 s and 2.5 GB; in 1M-row slices, about 300 s.
SLICE_ROWS = 8_000_000
#: The copy's files: each a narrow range of objects over a few days, which DuckLake rules out for a
#: track by its statistics. Not partitioned by time: DuckLake writes one file per partition in an
#: insert, whatever its size. On 100M points, 16 MB to 128 MB files gave a track in 9-12 ms, the
#: same within the noise (benchmarks/copy_bench.py); 64 MB keeps the files few.
COPY_FILE_SIZE = "64MB"
COPY_ROW_GROUP_ROWS = 16_384
#: A copy is built again whole once the rows appended to it since its last build pass this share
#: of what that build wrote. Each append is sorted, but spans every object: the merges fold them
#: into files of 32 MB or more that every track of their days opens (100M points: one more per
#: ~0.5M rows appended, ~0.6 ms each). A build costs about a second per million rows, so at 10%
#: it costs ~10 s per million appended; a trigger of a few files would cost ~45 s (docs/adr/0010).
REBUILD_SHARE = 0.1


def keeps_copy(spec: DatasetSpec) -> bool:
    """Whether the dataset keeps a copy by object: it has objects and times, and did not opt out."""
    return spec.copy_by_object and spec.object_field is not None and spec.time_field is not None


def _order(spec: DatasetSpec) -> list[str]:
    """The copy's order, declared (merges keep it) and inserted in: by day, then object and time.

    Day first, so that each row group holds one day: a window's rows of every object (B7) are
    the row groups of its days, not every row group of the copy (100M points, a day: 0.55 s
    against 1.05 s). One object's track over many days opens a file or two per week of them
    (over 30 days: 13 ms against 6.5 ms); over a day, 7.6 ms either way (docs/adr/0010).
    """
    t = quote(spec.time_field or "")
    return [f"CAST({t} AS DATE)", quote(spec.object_field or ""), t]


def _mark(lake: Lake, cur: duckdb.DuckDBPyConnection, name: str, snapshot: int) -> int | None:
    """The snapshot the dataset's copy held every row of, as of `snapshot`; None when it has no
    copy, or when that snapshot has been forgotten (by other means than `CityBase.maintain`,
    which keeps it): the change feed no longer reaches back to it."""
    row = cur.execute(
        f"SELECT max(snapshot) FROM {CATALOG}.{COPIES} AT (VERSION => {int(snapshot)}) WHERE dataset = ?",
        [name],
    ).fetchone()
    mark = int(row[0]) if row and row[0] is not None else None
    return None if mark is None or mark < lake.oldest_snapshot() else mark


class Copies:
    """Reads through the copies of one lake, remembering each copy's mark at the last snapshot
    asked about (reading it costs ~5 ms, a track through the copy ~8 ms)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._marks: dict[str, tuple[int, int | None]] = {}
        self._lock = threading.Lock()

    def relation(self, cur: duckdb.DuckDBPyConnection, name: str) -> str | None:
        """The dataset's rows at the current snapshot, read through its copy by object: the copy as
        of that snapshot and the rows inserted since its mark. None when it has no copy yet, or
        when the snapshot it is marked at has been forgotten (maintenance builds it again)."""
        if not keeps_copy(self.lake.spec(name)):
            return None
        now = self.lake.snapshot(cur)
        with self._lock:
            hit = self._marks.get(name)
        if hit is not None and hit[0] == now:
            mark = hit[1]
        else:
            mark = _mark(self.lake, cur, name, now)
            with self._lock:
                self._marks[name] = (now, mark)
        if mark is None:
            return None
        return (
            f"(SELECT * FROM {self.lake.copy_table(name)} AT (VERSION => {now}) "
            f"UNION ALL SELECT * FROM {self.lake.inserted(name, mark, now)})"
        )


def refresh(lake: Lake, name: str) -> int:
    """Bring the dataset's copy up to the current snapshot; returns the rows it gained.

    From the change feed since the copy's mark, appended sorted by (object, time). Built again
    whole (`_build`) when it has no mark, when that snapshot has been forgotten (the feed no
    longer reaches back to it), or when what was appended since its last build passes
    REBUILD_SHARE of it.
    """
    spec = lake.spec(name)
    if not keeps_copy(spec):
        return 0
    now = lake.snapshot()
    with lake.cursor() as cur:
        mark = _mark(lake, cur, name, now)
        if mark is not None and mark >= now:
            return 0
        if mark is not None and not _outgrown(lake, cur, name):
            with lake.transaction() as tx:
                got = tx.execute(
                    f"INSERT INTO {lake.copy_table(name)} SELECT * FROM {lake.inserted(name, mark, now)} "
                    f"ORDER BY {', '.join(_order(spec))}"
                ).fetchone()
                tx.execute(f"UPDATE {CATALOG}.{COPIES} SET snapshot = ? WHERE dataset = ?", [now, name])
            return int(got[0]) if got else 0
    return _build(lake, spec, now)


def _outgrown(lake: Lake, cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the rows appended to the copy since its last whole build pass REBUILD_SHARE of
    what the build wrote (a copy whose build was not recorded: yes)."""
    row = cur.execute(f"SELECT built FROM {CATALOG}.{COPIES} WHERE dataset = ?", [name]).fetchone()
    built = row[0] if row else None
    if built is None:
        return True
    total = cur.execute(f"SELECT count(*) FROM {lake.copy_table(name)}").fetchone()
    return (int(total[0]) if total else 0) - int(built) > REBUILD_SHARE * max(int(built), 1)


def _build(lake: Lake, spec: DatasetSpec, now: int) -> int:
    """Build the copy whole from the table as of snapshot `now`, beside the copy in use, which it
    replaces in its last commit; returns the rows written.

    One commit per slice of objects: flushes wait for one slice's sort, not for the whole build.
    Until the last commit, readers read the copy as it was (or the table, where there was none);
    a build cut short is dropped by the next one, which starts again.
    """
    name = spec.name
    nxt = lake.copy_table(name, building=True)
    _create_next(lake, spec)
    source = f"(SELECT * FROM {lake.table(name)} AT (VERSION => {now}))"
    slices = _slices(lake, source, quote(spec.object_field or ""))
    order = ", ".join(_order(spec))
    added = 0
    for n, where in enumerate(slices, 1):
        with lake.transaction() as cur:
            got = cur.execute(f"INSERT INTO {nxt} SELECT * FROM {source} {where} ORDER BY {order}").fetchone()
            added += int(got[0]) if got else 0
            if n == len(slices):  # the new copy takes the old one's place, with its mark
                cur.execute(f"DROP TABLE IF EXISTS {lake.copy_table(name)}")
                cur.execute(f"ALTER TABLE {nxt} RENAME TO {quote(lake.copy_name(name))}")
                cur.execute(f"DELETE FROM {CATALOG}.{COPIES} WHERE dataset = ?", [name])
                cur.execute(f"INSERT INTO {CATALOG}.{COPIES} VALUES (?, ?, ?)", [name, now, added])
    return added


def _slices(lake: Lake, source: str, obj: str) -> list[str]:
    """WHERE clauses that split `source`'s rows into ranges of objects of about SLICE_ROWS rows
    each, bounds taken from a sample; every row in exactly one (null objects in the last)."""
    with lake.cursor() as cur:
        row = cur.execute(f"SELECT count(*) FROM {source}").fetchone()
        n = math.ceil((int(row[0]) if row else 0) / SLICE_ROWS)
        if n <= 1:
            return [""]
        sample = cur.execute(
            f"SELECT quantile_disc({obj}, [{', '.join(str(i / n) for i in range(1, n))}]) "
            f"FROM (SELECT {obj} FROM {source} USING SAMPLE 100000 ROWS)"
        ).fetchone()
        bounds = sorted(set(sample[0])) if sample and sample[0] else []
    if not bounds:
        return [""]
    marks = [literal(b) for b in bounds]
    out = [f"WHERE {obj} < {marks[0]}"]
    out += [f"WHERE {obj} >= {lo} AND {obj} < {hi}" for lo, hi in itertools.pairwise(marks)]
    out.append(f"WHERE {obj} >= {marks[-1]} OR {obj} IS NULL")
    return out


def _create_next(lake: Lake, spec: DatasetSpec) -> None:
    """An empty table for a whole build, with the dataset table's columns, sorted by object and
    time; what an earlier build cut short left dropped first."""
    table, nxt = lake.table(spec.name), lake.copy_table(spec.name, building=True)
    with lake.transaction() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {nxt}")
        cur.execute(f"CREATE TABLE {nxt} AS SELECT * FROM {table} LIMIT 0")
    with lake.transaction() as cur:  # (table options only on committed tables)
        cur.execute(f"ALTER TABLE {nxt} SET SORTED BY ({', '.join(_order(spec))})")
        options = {
            "sort_on_insert": False,
            "parquet_row_group_size": COPY_ROW_GROUP_ROWS,
            "target_file_size": COPY_FILE_SIZE,
        }
        for option, value in options.items():
            cur.execute(
                f"CALL {CATALOG}.set_option(?, ?, table_name => ?)",
                [option, value, lake.copy_name(spec.name, building=True)],
            )
