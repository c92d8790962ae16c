"""The lake: one DuckLake table per dataset, committed atomically, clustered by time and space.

DuckLake (ADR 0001) keeps data in Parquet files and the table metadata in a SQL catalog: a DuckDB
file in the embedded deployment (ADR 0007), PostgreSQL in the cluster one. A commit is one catalog
transaction, so a reader sees a whole load or none of it; the platform's bookkeeping (which files
were loaded, the durable log's watermark, quarantined rows, dataset declarations) lives in lake
tables too, and is committed in the same transaction as the rows it describes. That is what makes a
crash at any point lose nothing and duplicate nothing.

All writes funnel through one `Lake` object and one lock (HOUSE_STYLE 5); reads use cursors.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from citybase.errors import Conflict, NotFound
from citybase.model.dataset import DatasetSpec
from citybase.model.layout import H3, QUARANTINE_COLUMNS, TILE, table_columns
from citybase.sqltext import literal, quote
from citybase.store.engine import connect, load_aliased

CATALOG = "lake"
#: Rows per Parquet row group: small enough that a place or time predicate skips most of a file.
ROW_GROUP_ROWS = 16_384
#: Merged files written per transaction by `merge_small_files`: each is a sort of its inputs, and
#: a table split by cell (ADR 0006) has hundreds of partitions to merge after a large load. A
#: transaction's memory grows with them: 30M points merged by size band peaked at 3,775 MB of RSS
#: with 16, 2,748 MB with 4 (DuckLake's single pass with 16: 2,611 MB).
MERGES_PER_COMMIT = 4
#: Size bands of a merge (bytes): files are merged only with files of their own band, [0, 128 KB),
#: [128 KB, 1 MB), [1, 8 MB), [8, 32 MB), and files of 32 MB or more never again (docs/adr/0011;
#: below the copies by object's 64 MB files, which DuckLake writes at 63-65 MB). DuckLake's own
#: default merges every file under its target size (512 MB): a partition's large file was
#: rewritten whole for a few new rows at every maintenance.
MERGE_BANDS: tuple[int, ...] = (128 << 10, 1 << 20, 8 << 20, 32 << 20)
#: The embedded catalog's file in a platform's root (ADR 0007), and the SQLite one roots made
#: before it have.
EMBEDDED_CATALOG = "catalog.ducklake"
LEGACY_CATALOG = "catalog.sqlite"

COPIES = "citybase_copies"
_SYSTEM_TABLES = {
    "citybase_datasets": "name VARCHAR, spec VARCHAR, created_at TIMESTAMP",
    "citybase_loads": (
        "dataset VARCHAR, digest VARCHAR, batch VARCHAR, source VARCHAR, rows BIGINT,"
        " quarantined BIGINT, duplicates BIGINT, loaded_at TIMESTAMP"
    ),
    "citybase_watermark": "log_seq BIGINT",  # before marks were kept per log: read once, then emptied
    "citybase_log_marks": "log_id VARCHAR, log_seq BIGINT",
    "citybase_quarantine": ", ".join(f"{n} {sql}" for n, _, sql in QUARANTINE_COLUMNS),
    # Dataset -> its copy by object's mark (the snapshot it holds every row of), and the rows its
    # last whole build wrote (store/by_object.py).
    COPIES: "dataset VARCHAR, snapshot BIGINT, built BIGINT",
}
#: A dataset's copy by object is the table `<dataset>-by-object` (no dataset name has a '-'); a
#: whole build writes `<dataset>-by-object-next`, renamed to it when done.
COPY_SUFFIX = "-by-object"
NEXT_SUFFIX = "-next"


@dataclass(frozen=True)
class LoadRecord:
    """What one committed batch was: kept so that the same input is never stored twice."""

    dataset: str
    digest: str
    batch: str
    source: str
    rows: int
    quarantined: int
    duplicates: int


@dataclass(frozen=True)
class Location:
    """Where the lake lives: catalog (`duckdb:<file>`, `sqlite:<file>` or `postgres:<DSN>`) and
    data folder."""

    catalog: str
    data_path: str
    #: The data folder belongs with the catalog (the embedded root): wherever the root is opened
    #: from (another working directory, a moved or copied folder), its own `lake/` is the data.
    own_folder: bool = False

    @classmethod
    def embedded(cls, root: Path) -> Location:
        """The root's own catalog: a DuckDB file (ADR 0007), or the SQLite file of a root made
        before it, which stays in use."""
        root = Path(root).resolve()
        data = str(root / "lake") + "/"
        if (root / LEGACY_CATALOG).exists():
            return cls(f"sqlite:{root / LEGACY_CATALOG}", data, own_folder=True)
        return cls(f"duckdb:{root / EMBEDDED_CATALOG}", data, own_folder=True)


def _use_wal(catalog: Path) -> None:
    """Put a SQLite catalog in WAL mode (it stays so): readers then never block the writer or each
    other. In the default rollback-journal mode a query that reads the catalog while the flusher
    commits fails at once with "database is locked" (DuckDB's SQLite driver does not wait)."""
    catalog.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(catalog)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _held_elsewhere(e: duckdb.Error) -> bool:
    """Whether attaching a DuckDB catalog failed because another process (a file lock) or another
    database in this process (DuckDB's file-handle registry) has it."""
    text = str(e)
    return "Could not set lock on file" in text or "Unique file handle conflict" in text


class Lake:
    """The city's tables. Create with a `Location`; close when done."""

    def __init__(self, location: Location, *, threads: int | None = None, memory_limit: str | None = None):
        self.location = location
        if location.catalog.startswith("sqlite:"):
            _use_wal(Path(location.catalog.removeprefix("sqlite:")))
        self.con = connect(threads=threads, memory_limit=memory_limit)
        if location.catalog.startswith("postgres:"):
            load_aliased(self.con, "postgres")
        override = ", OVERRIDE_DATA_PATH TRUE" if location.own_folder else ""
        options = f"DATA_PATH '{location.data_path}'{override}"
        try:
            self.con.execute(f"ATTACH 'ducklake:{location.catalog}' AS {CATALOG} ({options})")
        except duckdb.Error as e:
            self.con.close()
            if location.catalog.startswith("duckdb:") and _held_elsewhere(e):
                raise Conflict(
                    f"the lake catalog {location.catalog.removeprefix('duckdb:')} is open in another "
                    "process or another CityBase in this one (a running `citybase serve`?): one process "
                    "holds an embedded platform (ADR 0007); query it through that process's API, or "
                    "stop it first"
                ) from e
            raise
        self._lock = threading.RLock()
        self._specs: dict[str, DatasetSpec] = {}
        #: Log id -> its watermark, as committed (only that log's flushes move it), and what the
        #: open transaction sets (applied at its commit).
        self._marks: dict[str, int] = {}
        self._pending_marks: dict[str, int] = {}
        #: The single mark of a lake made before marks were kept per log (None: none left), read
        #: only when a log without a mark of its own asks (not at every start).
        self._legacy: int | None = None
        self._legacy_read = False
        with self.transaction() as cur:
            cur.execute(f"CALL {CATALOG}.set_option('parquet_row_group_size', {ROW_GROUP_ROWS})")
            # LZ4 (Parquet's LZ4_RAW): DuckDB decodes it ~30% faster than snappy, at the same size
            # and write speed (B1 at 100M points, 511k rows: 29-35 ms against 44-52 ms).
            cur.execute(f"CALL {CATALOG}.set_option('parquet_compression', 'lz4')")
            # Every row in a Parquet file, none inlined in the catalog: files are what other engines
            # read, and what the ledger hashes (a tampered row must change a hashed file).
            cur.execute(f"CALL {CATALOG}.set_option('data_inlining_row_limit', 0)")
            for name, cols in _SYSTEM_TABLES.items():
                cur.execute(f"CREATE TABLE IF NOT EXISTS {CATALOG}.{name} ({cols})")
            # (lakes made before copies recorded their builds)
            cur.execute(f"ALTER TABLE {CATALOG}.{COPIES} ADD COLUMN IF NOT EXISTS built BIGINT")
        with self.transaction() as cur:  # (a table's options cannot be set in its creating transaction)
            # The watermark is rewritten by every flush: one row, kept in the catalog, not a file.
            for name in ("citybase_watermark", "citybase_log_marks", COPIES):
                cur.execute(
                    f"CALL {CATALOG}.set_option('data_inlining_row_limit', 100, table_name => ?)", [name]
                )
        for name, spec in self.con.execute(f"SELECT name, spec FROM {CATALOG}.citybase_datasets").fetchall():
            self._specs[name] = DatasetSpec.model_validate_json(spec)
        #: Datasets whose table is declared sorted by H3 cell (_sort_by_cell).
        self._sorted: set[str] = set()
        #: Dataset -> the columns its table has (a table made before shadow columns lacks them).
        self._columns: dict[str, frozenset[str]] = {}
        for table, column in self.con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?", [CATALOG]
        ).fetchall():
            if table in self._specs:
                self._columns[table] = self._columns.get(table, frozenset()) | {column}

    def close(self) -> None:
        self.con.close()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic commit: everything done on the yielded connection lands together or not at all."""
        with self._lock:
            cur = self.con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                self._pending_marks.clear()
                with contextlib.suppress(duckdb.Error):  # (a failed COMMIT has rolled back already)
                    cur.execute("ROLLBACK")
                cur.close()
                raise
            self._marks.update(self._pending_marks)
            if self._pending_marks:
                self._legacy, self._legacy_read = None, True  # taken over (set_watermark) at this commit
            self._pending_marks.clear()
            cur.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read cursor (its own transaction; safe to use from another thread)."""
        return self.con.cursor()

    # -- datasets -----------------------------------------------------------------------------

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return dict(self._specs)

    def spec(self, name: str) -> DatasetSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise NotFound(f"no dataset named {name!r}") from None

    def columns(self, name: str) -> frozenset[str]:
        """The columns the dataset's table has: its stored columns and, unless the table was made
        before them, its shadow columns (model/layout.py)."""
        self.spec(name)
        return self._columns.get(name, frozenset())

    def table(self, name: str) -> str:
        """The dataset's fully qualified table name, for SQL."""
        self.spec(name)
        return f"{CATALOG}.{quote(name)}"

    def copy_name(self, name: str, *, building: bool = False) -> str:
        """The name of the table holding the dataset's copy by object (store/by_object.py); with
        `building`, of the one a whole build writes before it takes the copy's place."""
        self.spec(name)
        return name + COPY_SUFFIX + (NEXT_SUFFIX if building else "")

    def copy_table(self, name: str, *, building: bool = False) -> str:
        """The copy's fully qualified table name, for SQL."""
        return f"{CATALOG}.{quote(self.copy_name(name, building=building))}"

    def drop_copy(self, cur: duckdb.DuckDBPyConnection, name: str) -> None:
        """In the open transaction: drop the dataset's copy by object (and any build of one under
        way) and forget its mark, so that readers read the table until a copy is built again."""
        cur.execute(f"DROP TABLE IF EXISTS {self.copy_table(name)}")
        cur.execute(f"DROP TABLE IF EXISTS {self.copy_table(name, building=True)}")
        cur.execute(f"DELETE FROM {CATALOG}.{COPIES} WHERE dataset = ?", [name])

    def inserted(self, name: str, since: int, until: int) -> str:
        """The rows inserted into the dataset's table after snapshot `since` up to `until`, as a
        SQL relation (DuckLake's change feed: merges and rewrites are not insertions)."""
        self.spec(name)
        if until <= since:
            return f"(SELECT * FROM {self.table(name)} LIMIT 0)"
        return f"ducklake_table_insertions('{CATALOG}', 'main', {literal(name)}, {since + 1}, {until})"

    def create_dataset(self, spec: DatasetSpec, *, replace: bool = False) -> bool:
        """Create the dataset's table from its declaration; False if an identical one exists."""
        old = self._specs.get(spec.name)
        if old is not None:
            if old == spec:
                return False
            if not replace:
                raise Conflict(
                    f"dataset {spec.name!r} is already declared differently; "
                    "changing a declaration needs replace=True (a schema migration)"
                )
        layout = [(n, sql) for n, _, sql in table_columns(spec)]
        if _tiled(spec):
            layout.append((TILE, "UBIGINT"))
        cols = ", ".join(f"{quote(n)} {sql}" for n, sql in layout)
        with self.transaction() as cur:
            table = f"{CATALOG}.{quote(spec.name)}"
            if old is not None:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
                self.drop_copy(cur, spec.name)
                cur.execute(f"DELETE FROM {CATALOG}.citybase_datasets WHERE name = ?", [spec.name])
            cur.execute(f"CREATE TABLE {table} ({cols})")
            parts = _partition_sql(spec) + ([quote(TILE)] if _tiled(spec) else [])
            if parts:
                cur.execute(f"ALTER TABLE {table} SET PARTITIONED BY ({', '.join(parts)})")
            cur.execute(
                f"INSERT INTO {CATALOG}.citybase_datasets VALUES (?, ?, ?)",
                [spec.name, spec.model_dump_json(), _now()],
            )
        self._specs[spec.name] = spec
        self._columns[spec.name] = frozenset(n for n, _ in layout)
        self._sorted.discard(spec.name)  # a replaced table is a new table
        self._sort_by_cell(spec.name)
        return True

    def _sort_by_cell(self, name: str) -> None:
        """Declare the table sorted by H3 cell, so that merges write one sorted run per partition.

        Each insert is sorted already (insert_rows), but a partition written by many loads and
        flushes is many runs, each covering the whole city: a place query reads row groups from
        every one. DuckLake's merge sorts what it merges by the declared order: one run, whose
        row groups cover compact areas (B1 at 10M points: 63 row groups read before, 28 after).
        Inserts keep their own sort (sort_on_insert off: it would sort twice). Not in the
        creating transaction: DuckLake takes table options only on committed tables.
        """
        if H3 not in self._columns.get(name, frozenset()) or name in self._sorted:
            return
        meta = f"__ducklake_metadata_{CATALOG}"
        with self.transaction() as cur:
            done = cur.execute(
                f"""SELECT count(*) FROM {meta}.ducklake_sort_info i
                JOIN {meta}.ducklake_table t ON t.table_id = i.table_id AND t.end_snapshot IS NULL
                WHERE t.table_name = ? AND i.end_snapshot IS NULL""",
                [name],
            ).fetchone()
            if not (done and done[0]):
                cur.execute(f"ALTER TABLE {self.table(name)} SET SORTED BY ({quote(H3)})")
                cur.execute(f"CALL {CATALOG}.set_option('sort_on_insert', false, table_name => ?)", [name])
                if _tiled(self.spec(name)):
                    # Not `_tile=<id>` folders: readers that infer columns from folder names (Dask,
                    # pyarrow) would take the key as text and clash with the UBIGINT in the file.
                    cur.execute(
                        f"CALL {CATALOG}.set_option('hive_file_pattern', false, table_name => ?)", [name]
                    )
        self._sorted.add(name)

    # -- writes -------------------------------------------------------------------------------
    # Each works inside a `transaction()`, so that rows and their bookkeeping commit together.

    def insert_rows(
        self,
        cur: duckdb.DuckDBPyConnection,
        dataset: str,
        rows: pa.Table | Iterable[pa.Table],
        *,
        same: Mapping[str, Any] | None = None,
    ) -> int:
        """Append rows (in the table layout, shadow columns included); return how many were added.

        `rows` may be tables made as they are asked for (a load reading its file): DuckDB reads
        them as a stream, so reading, checking and keying the next rows runs beside the sort of
        those before them. An exception raised while making them is raised here as it was.
        `same` names columns with one value in every row (None: null): they are not read from
        `rows` but added after the sort, which then moves less (a third less time for a load's
        points; enrich.same_in_every_row).

        Rows whose declared key is already stored, or repeated in the batch, are left out.
        Rows are sorted by time partition, then by H3 cell, so each row group covers a compact
        area and min/max statistics on lon/lat and the place keys let a place predicate skip most
        of a file. The partition comes first because DuckDB's partitioned write keeps the sorted
        order only where each partition's rows arrive together: sorted by cell alone, a day's file
        came out as ~34 interleaved runs (2M rows, 30 days); sorted by day, then cell, as one run
        in most files (13 breaks in 30 files), at about the same cost.
        """
        spec = self.spec(dataset)
        table = self.table(dataset)
        have = self.columns(dataset)
        cols = [c for c in table_columns(spec) if c[0] in have]
        names = [n for n, _, _ in cols]
        fixed = {n: v for n, v in (same or {}).items() if n in names and n != H3 and n not in spec.key}
        read = [c for c in cols if c[0] not in fixed]
        exprs = [
            f"ST_GeomFromWKB({quote(n)}) AS {quote(n)}" if sql == "GEOMETRY" else quote(n)
            for n, _, sql in read
        ]
        targets = [quote(n) for n in names]
        if TILE in have and spec.partition_cells is not None:
            exprs.append(f"{tile_sql(spec.partition_cells)} AS {quote(TILE)}")
            targets.append(quote(TILE))
        select = ", ".join(exprs)
        order = f" ORDER BY {', '.join([*_partition_sql(spec), quote(H3)])}" if H3 in names else ""
        failed = _register_once(cur, "_batch_rows", rows, pa.schema([(n, t) for n, t, _ in read]))
        src, where = "_batch_rows", ""
        try:
            if spec.key:
                keys = ", ".join(quote(k) for k in spec.key)
                cur.execute(
                    "CREATE OR REPLACE TEMP TABLE _dedup AS SELECT * FROM _batch_rows "
                    f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {quote('_line')}) = 1"
                )
                src = "_dedup"
                cond = " AND ".join(f"t.{quote(k)} IS NOT DISTINCT FROM b.{quote(k)}" for k in spec.key)
                where = (
                    f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {cond}{_key_ranges(cur, spec.key)})"
                )
            body = f"SELECT {select} FROM {src} b{where}{order}"
            if fixed:  # (a projection over the sorted rows keeps their order)
                outer = [_typed(fixed[n], sql) if n in fixed else quote(n) for n, _, sql in cols]
                body = f"SELECT {', '.join(outer + targets[len(cols) :])} FROM ({body})"
            got = cur.execute(f"INSERT INTO {table} ({', '.join(targets)}) {body}").fetchone()
        except duckdb.Error:
            if failed:  # the rows' maker failed (a bad file): its error, not DuckDB's wrapping of it
                raise failed[0] from None
            raise
        if spec.key:
            cur.execute("DROP TABLE _dedup")
        cur.unregister("_batch_rows")
        return int(got[0]) if got else 0

    def insert_quarantine(self, cur: duckdb.DuckDBPyConnection, quarantine: pa.Table) -> None:
        if not quarantine.num_rows:
            return
        _register_once(cur, "_q", quarantine)
        cols = ", ".join(quote(n) for n, _, _ in QUARANTINE_COLUMNS)
        cur.execute(f"INSERT INTO {CATALOG}.citybase_quarantine SELECT {cols} FROM _q")
        cur.unregister("_q")

    def insert_loads(self, cur: duckdb.DuckDBPyConnection, records: Sequence[LoadRecord]) -> None:
        """Record loads of files (one statement: one small lake file, however many records)."""
        if not records:
            return
        now = _now()
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(records))
        cur.execute(
            f"INSERT INTO {CATALOG}.citybase_loads VALUES {values}",
            [v for r in records for v in (*astuple(r), now)],
        )

    def set_watermark(self, cur: duckdb.DuckDBPyConnection, seq: int, log_id: str) -> None:
        """Record in the open transaction that log `log_id` is in the lake up to entry `seq`."""
        self.watermark(log_id)  # (reads the old single mark, if the lake has one)
        cur.execute(f"DELETE FROM {CATALOG}.citybase_log_marks WHERE log_id = ?", [log_id])
        cur.execute(f"INSERT INTO {CATALOG}.citybase_log_marks VALUES (?, ?)", [log_id, seq])
        if self._legacy is not None:  # the one log of a lake made before per-log marks takes it over
            cur.execute(f"DELETE FROM {CATALOG}.citybase_watermark")
        self._pending_marks[log_id] = seq

    # -- bookkeeping reads --------------------------------------------------------------------

    def find_load(self, dataset: str, digest: str) -> LoadRecord | None:
        return self.find_loads(dataset, [digest]).get(digest)

    def find_loads(self, dataset: str, digests: Sequence[str]) -> dict[str, LoadRecord]:
        """Digest -> the earlier load of that content into the dataset, for those loaded before:
        one catalog query however many files (each costs ~10 ms, as much as reading a small file)."""
        if not digests:
            return {}
        rows = (
            self.con.cursor()
            .execute(
                f"SELECT dataset, digest, batch, source, rows, quarantined, duplicates "
                f"FROM {CATALOG}.citybase_loads WHERE dataset = ? AND digest IN "
                f"(SELECT unnest(?::VARCHAR[]))",
                [dataset, list(digests)],
            )
            .fetchall()
        )
        return {r[1]: LoadRecord(*r) for r in rows}

    def watermark(self, log_id: str) -> int:
        """The last entry of log `log_id` the lake holds (0: none).

        Read from the catalog once, then kept: only that log's own flushes move it. A lake made
        before marks were kept per log has one mark for its one log, which counts until then.
        """
        with self._lock:
            mark = self._marks.get(log_id)
            if mark is None:
                row = (
                    self.con.cursor()
                    .execute(
                        f"SELECT max(log_seq) FROM {CATALOG}.citybase_log_marks WHERE log_id = ?", [log_id]
                    )
                    .fetchone()
                )
                mark = int(row[0]) if row and row[0] is not None else (self._legacy_mark() or 0)
                self._marks[log_id] = mark
            return mark

    def _legacy_mark(self) -> int | None:
        if not self._legacy_read:
            sql = f"SELECT max(log_seq) FROM {CATALOG}.citybase_watermark"
            row = self.con.cursor().execute(sql).fetchone()
            self._legacy = int(row[0]) if row and row[0] is not None else None
            self._legacy_read = True
        return self._legacy

    def snapshot(self, cur: duckdb.DuckDBPyConnection | None = None) -> int:
        """The current snapshot id: changes with every commit anywhere in the lake."""
        c = cur or self.con.cursor()
        try:
            # DuckLake's own metadata catalog, attached as __ducklake_metadata_<name>: one small query,
            # cheaper than current_snapshot() (this is asked before every direct-file read).
            row = c.execute(
                f"SELECT max(snapshot_id) FROM __ducklake_metadata_{CATALOG}.ducklake_snapshot"
            ).fetchone()
        except duckdb.Error:
            row = c.execute(f"SELECT id FROM {CATALOG}.current_snapshot()").fetchone()
        return int(row[0]) if row and row[0] is not None else -1

    def merge_small_files(self, progress: Callable[[str, int], None] | None = None) -> int:
        """Merge the small files that frequent flushes leave into larger ones; returns files merged.
        `progress(table, files)` is called after each commit, with the files it merged.

        Reads slow down with every file a table has (each is opened and its footer read), and a
        server flushing every second writes thousands a day. Files merge only with files of their
        own size band (MERGE_BANDS), so a trickle of rows costs what it adds, not what its
        partition holds. One table per transaction, so a flush waits for one table's merge at
        most, never for all of them. The merged-away files stay on disk (time travel and the
        ledger's audit still find them) until snapshots expire.
        """
        merged = 0
        for name in self._specs:
            self._sort_by_cell(name)  # tables declared before sort orders were
        tables = {
            r[0]
            for r in self.con.cursor()
            .execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [CATALOG])
            .fetchall()
        }
        copies = [self.copy_name(n) for n in self._specs if self.copy_name(n) in tables]
        for name in [*self._specs, *copies, *_SYSTEM_TABLES]:
            # Smallest band first: what it merges may join the next band's files in this same call.
            for lo, hi in itertools.pairwise((0, *MERGE_BANDS)):
                while True:  # a few partitions per transaction: memory bounded by them, not the table
                    with self.transaction() as cur:
                        rows = cur.execute(
                            f"CALL ducklake_merge_adjacent_files('{CATALOG}', ?, max_compacted_files => ?, "
                            "min_file_size => ?, max_file_size => ?)",
                            [name, MERGES_PER_COMMIT, lo, hi],
                        ).fetchall()
                    done = sum(int(r[2]) for r in rows)
                    merged += done
                    if progress is not None:
                        progress(name, done)
                    if len(rows) < MERGES_PER_COMMIT or not done:
                        break
        return merged

    def expire_snapshots(self, older_than: datetime) -> int:
        """Forget the snapshots committed before `older_than` (never the current one); returns how
        many. Files that only they held join the `retired_files` (as merged-away ones do at once).

        Every flush is a snapshot, a row in the catalog: a server flushing each second adds
        86,400 a day. Expiring bounds them; the price is time travel to before `older_than`.
        The snapshots that copies by object are marked at are kept (store/by_object.py: their
        change feed starts there; without it the copy is built again whole).
        """
        row = (
            self.con.cursor()
            .execute(
                f"SELECT min(snapshot_time) FROM {CATALOG}.snapshots() WHERE snapshot_id IN "
                f"(SELECT snapshot FROM {CATALOG}.{COPIES})"
            )
            .fetchone()
        )
        if row and row[0] is not None:
            older_than = min(_utc(older_than), _utc(row[0]))
        return len(self._older_than("ducklake_expire_snapshots", older_than))

    def retired_files(self, before: datetime) -> list[str]:
        """Files retired before `before` (merged away, or held only by expired snapshots): what
        `remove_retired_files(before)` deletes. Relative to the data folder where they lie under
        it (as `files_since`). A snapshot younger than `before` may still hold one: the caller
        expires those first."""
        rows = self._older_than("ducklake_cleanup_old_files", before, dry_run=True)
        root = self.location.data_path.rstrip("/") + "/"
        return sorted(str(r[0]).removeprefix(root) for r in rows)

    def remove_retired_files(self, before: datetime) -> int:
        """Delete the files `retired_files(before)` lists; returns how many."""
        return len(self._older_than("ducklake_cleanup_old_files", before))

    def remove_orphans(self, before: datetime) -> int:
        """Delete the files in the data folder that no commit names, last written before `before`:
        what a process stopped in the middle of a write leaves (a crash, a kill). Younger ones
        may belong to a write still under way (another root's, on a shared folder)."""
        return len(self._older_than("ducklake_delete_orphaned_files", before))

    def _older_than(self, function: str, moment: datetime, *, dry_run: bool = False) -> list[tuple[Any, ...]]:
        """The rows of one of DuckLake's maintenance functions, applied to what is older than
        `moment` (with `dry_run`: only listed), under the lake's write lock."""
        dry = "dry_run => true, " if dry_run else ""
        with self._lock:
            return (
                self.con.cursor()
                .execute(f"CALL {function}('{CATALOG}', {dry}older_than => ?)", [_utc(moment)])
                .fetchall()
            )

    def oldest_snapshot(self) -> int:
        """The first snapshot still kept: change feeds (`inserted`) can start from it, not before."""
        # (DuckLake's metadata table, as `snapshot` reads: 0.3 ms, where `snapshots()` takes 2.3.)
        row = (
            self.con.cursor()
            .execute(f"SELECT min(snapshot_id) FROM __ducklake_metadata_{CATALOG}.ducklake_snapshot")
            .fetchone()
        )
        return int(row[0]) if row and row[0] is not None else -1

    def file_mark(self) -> int:
        """A mark for `files_since`: the id the lake's next data file will get."""
        row = (
            self.con.cursor()
            .execute(
                f"SELECT next_file_id FROM __ducklake_metadata_{CATALOG}.ducklake_snapshot "
                "ORDER BY snapshot_id DESC LIMIT 1"
            )
            .fetchone()
        )
        return int(row[0]) if row and row[0] is not None else 0

    def files_since(self, mark: int) -> list[tuple[str, str]]:
        """(table, path relative to the data folder) of the data files written since `file_mark()`
        returned `mark`: what the ledger lists for each commit. One catalog query whatever the
        number of tables.

        By file id, not by snapshot: a merged file takes the first snapshot of the files it
        replaces (time travel still finds its rows there), so it would not count as new.
        """
        meta = f"__ducklake_metadata_{CATALOG}"
        rows = (
            self.con.cursor()
            .execute(
                f"""SELECT t.table_name,
                       CASE WHEN f.path_is_relative THEN
                           (CASE WHEN t.path_is_relative THEN
                               (CASE WHEN s.path_is_relative THEN s.path ELSE '' END) || t.path
                            ELSE '' END) || f.path
                       ELSE f.path END
                FROM {meta}.ducklake_data_file f
                JOIN {meta}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
                JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
                WHERE f.data_file_id >= ? ORDER BY f.data_file_id""",
                [mark],
            )
            .fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    def data_files(self, dataset: str) -> list[tuple[str, str | None]]:
        """The live (data file, delete file) pairs of a dataset's table."""
        self.spec(dataset)
        rows = (
            self.con.cursor()
            .execute("SELECT data_file, delete_file FROM ducklake_list_files(?, ?)", [CATALOG, dataset])
            .fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    def stats(self) -> dict[str, Any]:
        cur = self.con.cursor()
        out: dict[str, Any] = {}
        for name in self._specs:
            row = cur.execute(f"SELECT count(*) FROM {self.table(name)}").fetchone()
            out[name] = int(row[0]) if row else 0
        return out


def _register_once(
    cur: duckdb.DuckDBPyConnection,
    name: str,
    rows: pa.Table | Iterable[pa.Table],
    schema: pa.Schema | None = None,
) -> list[Exception]:
    """Make `rows` readable once as `name`, as a stream whose batches are let go as they are read.

    DuckDB keeps a registered table referenced until the transaction ends, unregistered or not: a
    load of one large file (one transaction) held every chunk it had inserted, 16.8 GB at 100M
    points. A stream's batches are released once scanned (tests/test_load.py measures it).

    `schema` picks the columns read: of a table, as typed there; of tables made as they are asked
    for, cast to its types. Returns a list that will hold what making them raised.
    """
    failed: list[Exception] = []
    if isinstance(rows, pa.Table):
        table = rows.select(schema.names) if schema is not None else rows
        pending = table.to_batches()
        schema = table.schema
        del rows, table

        def drain() -> Iterator[pa.RecordBatch]:
            while pending:
                yield pending.pop(0)

    else:
        assert schema is not None, "a stream of tables needs its schema"
        names = schema.names

        def drain() -> Iterator[pa.RecordBatch]:
            try:
                for table in rows:
                    part = table.select(names)
                    part = part if part.schema.equals(schema) else part.cast(schema)
                    yield from part.to_batches()
            except Exception as e:
                failed.append(e)
                raise

    cur.register(name, pa.RecordBatchReader.from_batches(schema, drain()))
    return failed


def _typed(value: Any, sql_type: str) -> str:
    """`value` (None: null) as a SQL constant of the column's type."""
    return f"CAST({'NULL' if value is None else literal(value)} AS {sql_type})"


def _key_ranges(cur: duckdb.DuckDBPyConnection, key: list[str]) -> str:
    """` AND t.k BETWEEN lo AND hi` for each key column the batch (`_dedup`) has no null in.

    Constant ranges reach the scan of the stored table, whose file and row-group statistics then
    skip what cannot hold a duplicate: without them, every insert into a keyed table (telemetry:
    device, ts) read the key columns of the whole table, a cost that grew with it.
    """
    cols = [quote(k) for k in key]
    stats = ", ".join(f"count(*) = count({c}), min({c}), max({c})" for c in cols)
    row = cur.execute(f"SELECT {stats} FROM _dedup").fetchone()
    if not row:
        return ""
    out = []
    for i, c in enumerate(cols):
        full, lo, hi = row[3 * i : 3 * i + 3]
        if full and _rangeable(lo) and _rangeable(hi):
            out.append(f" AND t.{c} BETWEEN {literal(lo)} AND {literal(hi)}")
    return "".join(out)


def _rangeable(value: Any) -> bool:
    """A key value a range can be written with (not null, bool, NaN or an unknown type)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int | str | date) and not isinstance(value, bool)


def _tiled(spec: DatasetSpec) -> bool:
    """True when the dataset's files are split by cell (`partition_cells`) as well as by time."""
    return spec.partition_cells is not None and H3 in {n for n, _, _ in table_columns(spec)}


def tile_sql(resolution: int, column: str = quote(H3)) -> str:
    """SQL for the id of the ancestor at `resolution` of the H3 cell in `column`: the spatial
    partition key. The id keeps the cell's digits down to `resolution`, with the resolution field
    (bits 52-55) set to it and every finer digit set to 7 (unused), as H3 writes a coarser cell.

    >>> import duckdb, h3
    >>> cell = h3.str_to_int(h3.latlng_to_cell(39.9, 116.4, 12))
    >>> got = duckdb.sql(f"SELECT {tile_sql(6, f'{cell}::UBIGINT')}").fetchone()[0]
    >>> got == h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), 6))
    True
    """
    clear = ~(0xF << 52) & (2**64 - 1)
    ones = (resolution << 52) | ((1 << (3 * (15 - resolution))) - 1)
    return f"(({column} & {clear}::UBIGINT) | {ones}::UBIGINT)"


def _partition_sql(spec: DatasetSpec) -> list[str]:
    """The SQL expressions of the dataset's time partition: its partition keys (create_dataset), and
    the first keys of the order rows are inserted in (insert_rows)."""
    if not spec.time_field or spec.partition == "none":
        return []
    t = quote(spec.time_field)
    return {"year": [f"year({t})"], "month": [f"year({t})", f"month({t})"]}.get(
        spec.partition, [f"year({t})", f"month({t})", f"day({t})"]
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _utc(moment: datetime) -> datetime:
    """`moment` with its zone (a naive one is UTC, as every time in the lake is)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- the city model's layers ------------------------------------------------------------------

_PLACE_COLS = (
    "code VARCHAR, name VARCHAR, parent VARCHAR, geom GEOMETRY, "
    "xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE"
)


def save_layers(lake: Lake, settings: dict[str, Any], layers: dict[str, pa.Table]) -> None:
    """Replace the city's settings and area layers in one commit (`place_<level>` tables)."""
    with lake.transaction() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {CATALOG}.citybase_city (settings VARCHAR)")
        cur.execute(f"DELETE FROM {CATALOG}.citybase_city")
        cur.execute(f"INSERT INTO {CATALOG}.citybase_city VALUES (?)", [json.dumps(settings)])
        for level, t in layers.items():
            table = f"{CATALOG}.place_{level}"
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} ({_PLACE_COLS})")
            cur.register("_layer", t)
            cur.execute(
                f"INSERT INTO {table} SELECT code, name, parent, ST_GeomFromWKB(geom), "
                "xmin, ymin, xmax, ymax "
                "FROM _layer"
            )
            cur.unregister("_layer")


def load_layers(lake: Lake) -> tuple[dict[str, Any], dict[str, pa.Table]] | None:
    """The city's settings and layers as stored, or None before the city is set up."""
    cur = lake.cursor()
    tables = {
        r[0]
        for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [CATALOG]
        ).fetchall()
    }
    if "citybase_city" not in tables:
        return None
    row = cur.execute(f"SELECT settings FROM {CATALOG}.citybase_city").fetchone()
    if row is None:
        return None
    layers = {}
    for name in sorted(tables):
        if name.startswith("place_"):
            layers[name.removeprefix("place_")] = cur.execute(
                f"SELECT code, name, parent, ST_AsWKB(geom) AS geom FROM {CATALOG}.{name}"
            ).to_arrow_table()
    return json.loads(row[0]), layers
