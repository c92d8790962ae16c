"""The durable append log: small writes are acknowledged once they are on disk here.

SQLite in WAL mode with `synchronous=FULL` fsyncs every commit, so a returned `append` survives a
crash or power cut. Entries are Arrow IPC payloads of validated rows (or quarantined ones); the
compactor moves them into the lake in order and records how far it got in the same lake commit,
so replay after a crash neither loses nor repeats an entry. An idempotency key makes a retried
batch a no-op: the second append returns the first one's sequence number.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

ROWS, QUARANTINE = "rows", "quarantine"


@dataclass(frozen=True)
class Entry:
    seq: int
    dataset: str
    kind: str  # "rows" or "quarantine"
    batch: str
    table: pa.Table


@dataclass(frozen=True)
class Appended:
    seq: int
    duplicate: bool  # True when the idempotency key was seen before: nothing was added
    digest: str = ""  # SHA-256 of the stored payload (the batch's Arrow IPC stream)


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue())


def _from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


class AppendLog:
    """A local, crash-safe, ordered log of batches waiting to be compacted into the lake."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " dataset TEXT NOT NULL,"
                " kind TEXT NOT NULL, batch TEXT NOT NULL, idem TEXT, rows INTEGER NOT NULL,"
                " payload BLOB NOT NULL, at REAL NOT NULL)"
            )
            # Idempotency keys outlive compaction: a retry after the batch reached the lake is still
            # recognised. Kept apart from entries, which are deleted once compacted.
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS idempotency (dataset TEXT NOT NULL, idem TEXT NOT NULL,"
                " seq INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (dataset, idem))"
            )
            # The log's identity: the lake keeps one watermark per log, so that several roots
            # (the cluster deployment) flush into one lake without taking each other's marks.
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('id', ?)", (uuid.uuid4().hex,))
            self.id: str = self._db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(
        self,
        dataset: str,
        table: pa.Table,
        *,
        batch: str,
        kind: str = ROWS,
        idempotency_key: str | None = None,
        extra: list[tuple[str, pa.Table]] | None = None,
    ) -> Appended:
        """Write a batch durably; with `extra`, more entries (e.g. its quarantine) in the same commit."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if idempotency_key is not None:
                    row = cur.execute(
                        "SELECT seq FROM idempotency WHERE dataset = ? AND idem = ?",
                        (dataset, idempotency_key),
                    ).fetchone()
                    if row is not None:
                        cur.execute("ROLLBACK")
                        return Appended(seq=int(row[0]), duplicate=True)
                now = time.time()
                payload = _to_ipc(table)
                seq = self._insert(cur, dataset, kind, batch, table.num_rows, payload, now)
                for k, t in extra or []:
                    self._insert(cur, dataset, k, batch, t.num_rows, _to_ipc(t), now)
                if idempotency_key is not None:
                    cur.execute(
                        "INSERT INTO idempotency VALUES (?, ?, ?, ?)", (dataset, idempotency_key, seq, now)
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return Appended(seq=seq, duplicate=False, digest=hashlib.sha256(payload).hexdigest())

    @staticmethod
    def _insert(
        cur: sqlite3.Cursor, dataset: str, kind: str, batch: str, rows: int, payload: bytes, now: float
    ) -> int:
        cur.execute(
            "INSERT INTO entries (dataset, kind, batch, rows, payload, at) VALUES (?, ?, ?, ?, ?, ?)",
            (dataset, kind, batch, rows, payload, now),
        )
        return int(cur.lastrowid or 0)

    def entries_after(
        self, seq: int, limit_rows: int = 1_000_000, through: int | None = None
    ) -> Iterator[Entry]:
        """Entries with a sequence number above `seq` (and at most `through`), in order, up to
        about `limit_rows` rows.

        Sizes are read first, so that a long backlog is not pulled into memory all at once.
        """
        bound = through if through is not None else (1 << 63) - 1
        with self._lock:
            sizes = self._db.execute(
                "SELECT seq, rows FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq", (seq, bound)
            ).fetchall()
        last, total = seq, 0
        for s, n in sizes:
            if total and total + n > limit_rows:
                break
            last, total = int(s), total + int(n)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, dataset, kind, batch, payload FROM entries"
                " WHERE seq > ? AND seq <= ? ORDER BY seq",
                (seq, last),
            ).fetchall()
        for s, dataset, kind, batch, payload in rows:
            yield Entry(seq=int(s), dataset=dataset, kind=kind, batch=batch, table=_from_ipc(payload))

    def truncate_through(self, seq: int) -> None:
        """Forget entries up to `seq` once the lake holds them (idempotency keys stay)."""
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE seq <= ?", (seq,))

    def pending(self) -> tuple[int, int]:
        """(entries, rows) not yet compacted."""
        with self._lock:
            row = self._db.execute("SELECT count(*), coalesce(sum(rows), 0) FROM entries").fetchone()
        return int(row[0]), int(row[1])

    def oldest_age(self) -> float:
        """Seconds the oldest entry not yet compacted has waited (0 when none): the ingest lag."""
        with self._lock:
            row = self._db.execute("SELECT min(at) FROM entries").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
        return int(row[0])

    def ensure_after(self, seq: int) -> None:
        """Make new entries number above `seq` (the lake's watermark), even in a fresh log file."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', ?)", (seq,))
            elif int(row[0]) < seq:
                self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'entries'", (seq,))
