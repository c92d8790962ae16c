"""A second copy of a dataset's rows, sorted by object and time, for one object's track (B3).

The lake sorts a dataset's rows by place (H3 cell) within each time partition, which is what makes
place queries fast; but then one vehicle's points of one day lie scattered over every file and
row group of the partition, and its track reads the whole partition (236 ms at 100M points in
month partitions split by cell, where DuckDB over a file written object by object took 24 ms).
A copy sorted by (object, time) gives each row group a narrow range of objects, so a track reads
one or two row groups per file (docs/adr/0010).

The copy is derived, never written by a load or a flush: maintenance (`refresh`) appends the rows
inserted since the snapshot it last covered, from DuckLake's change feed, and records that
snapshot in `citybase_copies` in the same commit. A reader at snapshot S reads the copy as of S
and the rows inserted after the copy's mark up to S (`relation`): the same rows as the table,
however stale the copy. Datasets are append-only; a dataset declared anew drops its copy
(`Lake.create_dataset`).
"""

from __future__ import annotations

import duckdb

from citybase.model.dataset import DatasetSpec
from citybase.sqltext import quote
from citybase.store.lake import CATALOG, COPIES, Lake, partition_sql

__all__ = ["keeps_copy", "refresh", "relation"]


def keeps_copy(spec: DatasetSpec) -> bool:
    """Whether the dataset keeps a copy by object: it has objects and times, and did not opt out."""
    return spec.copy_by_object and spec.object_field is not None and spec.time_field is not None


def _mark(cur: duckdb.DuckDBPyConnection, name: str, snapshot: int) -> int | None:
    row = cur.execute(
        f"SELECT max(snapshot) FROM {CATALOG}.{COPIES} AT (VERSION => {int(snapshot)}) WHERE dataset = ?",
        [name],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def relation(lake: Lake, cur: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The dataset's rows at the current snapshot, read through its copy by object: the copy as of
    that snapshot and the rows inserted since its mark. None when the dataset has no copy yet."""
    if not keeps_copy(lake.spec(name)):
        return None
    now = lake.snapshot(cur)
    mark = _mark(cur, name, now)
    if mark is None:
        return None
    return (
        f"(SELECT * FROM {lake.copy_table(name)} AT (VERSION => {now}) "
        f"UNION ALL SELECT * FROM {lake.inserted(name, mark, now)})"
    )


def refresh(lake: Lake, name: str) -> int:
    """Bring the dataset's copy up to the current snapshot; returns the rows it gained.

    From the change feed since the copy's mark; rebuilt whole when it has none, or when that
    snapshot has been forgotten (the feed no longer reaches back to it). Rows are appended
    sorted by (object, time); the copy's merges keep that order (it is declared SORTED BY).
    """
    spec = lake.spec(name)
    if not keeps_copy(spec):
        return 0
    now = lake.snapshot()
    mark = _mark(lake.cursor(), name, now)
    if mark is not None and mark >= now:
        return 0
    whole = mark is None or mark < lake.oldest_snapshot()
    if whole:
        _create(lake, spec)
    source = (
        f"(SELECT * FROM {lake.table(name)} AT (VERSION => {now}))"
        if whole
        else lake.inserted(name, mark or 0, now)
    )
    # Partition first: DuckDB's partitioned write keeps the order only where each partition's
    # rows arrive together (Lake.insert_rows).
    order = ", ".join([*partition_sql(spec), *(quote(c) for c in (spec.object_field, spec.time_field) if c)])
    with lake.transaction() as cur:
        got = cur.execute(
            f"INSERT INTO {lake.copy_table(name)} SELECT * FROM {source} ORDER BY {order}"
        ).fetchone()
        cur.execute(f"DELETE FROM {CATALOG}.{COPIES} WHERE dataset = ?", [name])
        cur.execute(f"INSERT INTO {CATALOG}.{COPIES} VALUES (?, ?)", [name, now])
    return int(got[0]) if got else 0


def _create(lake: Lake, spec: DatasetSpec) -> None:
    """An empty copy table with the dataset table's columns, in its time partitions, sorted by
    object and time; any earlier copy and its mark dropped first (readers then read the table)."""
    table, copy = lake.table(spec.name), lake.copy_table(spec.name)
    with lake.transaction() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {copy}")
        cur.execute(f"DELETE FROM {CATALOG}.{COPIES} WHERE dataset = ?", [spec.name])
        cur.execute(f"CREATE TABLE {copy} AS SELECT * FROM {table} LIMIT 0")
        parts = partition_sql(spec)
        if parts:
            cur.execute(f"ALTER TABLE {copy} SET PARTITIONED BY ({', '.join(parts)})")
    with lake.transaction() as cur:  # (table options only on committed tables)
        order = ", ".join(quote(c) for c in (spec.object_field, spec.time_field) if c)
        cur.execute(f"ALTER TABLE {copy} SET SORTED BY ({order})")
        cur.execute(
            f"CALL {CATALOG}.set_option('sort_on_insert', false, table_name => ?)",
            [lake.copy_name(spec.name)],
        )
