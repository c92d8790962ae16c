"""The ledger: a tiled Merkle log with durable, batched appends and a background integrator.

Shaped like Tessera: `append` hands entries to one sequencer thread that commits them in groups to a
SQLite WAL table (fsync on commit, then the caller is acknowledged with the entry's index); an
integrator thread turns sequenced entries into entry bundles, tiles and a signed checkpoint at least
once per `interval` while there is anything new. Readers (proofs, HTTP, CLI) need only the files.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from citybase.errors import Conflict, InputError, NotFound
from citybase.ledger import entry as entries
from citybase.ledger.checkpoint import Checkpoint, open_checkpoint
from citybase.ledger.cosign import WitnessRef, cosign
from citybase.ledger.keys import load_or_create, read_vkey
from citybase.ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
)
from citybase.ledger.note import Verifier
from citybase.ledger.tiles import (
    ENTRIES,
    TILE_WIDTH,
    TileStore,
    WriteBatch,
    tile_path,
    write_atomic,
)

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
KEY_FILE = "log.key"
VKEY_FILE = "log.vkey"
DB_FILE = "ledger.db"


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


class LogView:
    """Read-only access to a ledger folder: checkpoint, entries, proofs. Safe while a writer runs."""

    def __init__(self, path: Path, verifier: Verifier | None = None) -> None:
        self.path = Path(path)
        self.verifier = verifier or read_vkey(self.path / VKEY_FILE)
        self.origin = self.verifier.name
        self.tiles = TileStore(self.path)
        self._cp_cache: tuple[tuple[int, int, int], Checkpoint] | None = None

    def checkpoint_note(self) -> str:
        """The latest published checkpoint, as the signed note served at `checkpoint`."""
        try:
            return (self.path / CHECKPOINT).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise NotFound(f"no checkpoint in {self.path}") from e

    def checkpoint(self) -> Checkpoint:
        """The latest checkpoint, its log signature verified (re-read only when the file changes)."""
        try:
            st = (self.path / CHECKPOINT).stat()
        except FileNotFoundError as e:
            raise NotFound(f"no checkpoint in {self.path}") from e
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cp_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        cp = open_checkpoint(self.checkpoint_note(), self.verifier).checkpoint
        self._cp_cache = (stamp, cp)
        return cp

    @property
    def size(self) -> int:
        return self.checkpoint().size

    def _size_or(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise NotFound(f"tree size {size} is not published (latest is {current})")
        return size

    def entry(self, index: int) -> bytes:
        """The entry bytes at `index` (integrated entries only), read from its bundle."""
        size = self.size
        if not 0 <= index < size:
            raise NotFound(f"entry {index} is not in the published log (size {size})")
        t, off = divmod(index, TILE_WIDTH)
        width = TILE_WIDTH if (t + 1) * TILE_WIDTH <= size else size % TILE_WIDTH
        return self.tiles.read_entry(t, width, off)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(index, entry) for the published entries in [start, end), a bundle at a time."""
        size = self.size
        stop = size if end is None else min(end, size)
        for t in range(start // TILE_WIDTH, (stop + TILE_WIDTH - 1) // TILE_WIDTH):
            width = TILE_WIDTH if (t + 1) * TILE_WIDTH <= size else size % TILE_WIDTH
            for off, e in enumerate(self.tiles.read_bundle(t, width)):
                i = t * TILE_WIDTH + off
                if start <= i < stop:
                    yield i, e

    def leaf(self, index: int, size: int | None = None) -> bytes:
        n = self._size_or(size)
        return self.tiles.perfect(n)(0, index)

    def root(self, size: int | None = None) -> bytes:
        n = self._size_or(size)
        return EMPTY_ROOT if n == 0 else self.tiles.tree_hash(n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 inclusion proof of entry `index` in the tree of `size` (default: latest)."""
        n = self._size_or(size)
        return inclusion_proof(index, n, self.tiles.perfect(n))

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 6962 consistency proof from tree size `old` to `new` (default: latest)."""
        n = self._size_or(new)
        return consistency_proof(old, n, self.tiles.perfect(n))

    def find(self, key: str) -> list[int]:
        """Indexes of entries whose leaf hash (hex) or batch / digest / id / grant / use is `key`."""
        db = self.path / DB_FILE
        if not db.exists():
            return []
        # A 64-hex key may be a leaf hash (stored as bytes) or a sha256 digest field (stored as text).
        alt: str | bytes = key
        if len(key) == 64 and re.fullmatch(r"[0-9a-fA-F]{64}", key):
            alt = bytes.fromhex(key)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT DISTINCT idx FROM lookup WHERE key = ? OR key = ? ORDER BY idx", (key, alt)
            ).fetchall()
        finally:
            con.close()
        return [int(r[0]) for r in rows]

    def proof_bundle(self, index: int, size: int | None = None) -> dict[str, Any]:
        """Everything needed to check offline that entry `index` is in the log: the entry, its
        inclusion proof and the signed checkpoint the proof is against (one JSON document).

        With `size` (an older published size, e.g. of a checkpoint a department holds cosigned) the
        proof is against that size and `checkpoint` is null: the verifier brings its own.
        """
        note: str | None = self.checkpoint_note()
        latest = Checkpoint.parse(note or "")
        n = latest.size if size is None else size
        if n != latest.size:
            self._size_or(n)
            note = None
        data = self.entry(index)
        if index >= n:
            raise NotFound(f"entry {index} is not in the tree of size {n}")
        return {
            "origin": latest.origin,
            "index": index,
            "size": n,
            "entry": data.decode("utf-8"),
            "leaf_hash": b64(leaf_hash(data)),
            "inclusion": [b64(h) for h in inclusion_proof(index, n, self.tiles.perfect(n))],
            "checkpoint": note,
        }

    def consistency_bundle(self, old: int, new: int | None = None) -> dict[str, Any]:
        n = self._size_or(new)
        return {
            "origin": self.origin,
            "old": old,
            "new": n,
            "consistency": [b64(h) for h in self.consistency_proof(old, n)],
        }


class _Request:
    __slots__ = ("data", "future", "keys")

    def __init__(self, data: list[bytes], keys: list[list[str | bytes]]) -> None:
        self.data = data
        self.keys = keys
        self.future: Future[int] = Future()


class Ledger(LogView):
    """The writer: one per folder (a lock file enforces it). Use `Ledger.open(path, origin=...)`.

    >>> import tempfile
    >>> with Ledger.open(Path(tempfile.mkdtemp()), origin="citybase.example/demo") as lg:
    ...     i = lg.append("grant", {"id": "g1", "dataset": "air", "to": "health"})
    ...     cp = lg.flush()
    >>> (i, cp.size)
    (0, 1)
    """

    def __init__(
        self,
        path: Path,
        origin: str,
        interval: float = 0.5,
        witnesses: Sequence[WitnessRef] = (),
        witness_timeout: float = 5.0,
    ) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._lockf = open(path / "lock", "a+")  # noqa: SIM115 - held for the ledger's lifetime
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lockf.close()
            raise Conflict(f"ledger {path} is open in another process") from e
        try:
            self.signer = load_or_create(path / KEY_FILE, origin)
        except BaseException:
            self._lockf.close()
            raise
        super().__init__(path, self.signer.verifier)
        self.interval = interval
        self.witnesses = list(witnesses)
        self.witness_timeout = witness_timeout
        self._db = self._connect()
        self._idb = self._connect()
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._trim_to = self._trimmed = 0
        self._closing = False
        self._integrate_lock = threading.Lock()
        self._new = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ledger-fsync")
        self.last_error: BaseException | None = None  # latest integration failure, for health checks
        self._recover()
        self._sequencer = threading.Thread(target=self._sequence_loop, name="ledger-sequencer", daemon=True)
        self._integrator = threading.Thread(
            target=self._integrate_loop, name="ledger-integrator", daemon=True
        )
        self._sequencer.start()
        self._integrator.start()

    @classmethod
    def open(cls, path: Path | str, origin: str | None = None, **kw: Any) -> Ledger:
        """Open (or create) the ledger in `path`. `origin` is required the first time, e.g.
        `citybase.example/<city>`; later it must match the stored key's name if given."""
        path = Path(path)
        vkey = path / VKEY_FILE
        if vkey.exists():
            stored = read_vkey(vkey).name
            if origin is not None and origin != stored:
                raise Conflict(f"ledger {path} has origin {stored!r}, not {origin!r}")
            origin = stored
        if origin is None:
            raise InputError(f"ledger {path} is new: give its origin, e.g. citybase.example/<city>")
        return cls(path, origin, **kw)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path / DB_FILE, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")  # an acknowledged append is on disk
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("CREATE TABLE IF NOT EXISTS pending (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        # One b-tree for the lookups; leaf hashes are stored as 32-byte blobs, field values as text.
        con.execute(
            "CREATE TABLE IF NOT EXISTS lookup (key NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (key, idx))"
            " WITHOUT ROWID"
        )
        return con

    def _recover(self) -> None:
        """Find the published size, drop pending rows it already covers, resume numbering after the
        last acknowledged entry; anything sequenced but unpublished is integrated on the next tick."""
        if (self.path / CHECKPOINT).exists():
            self._cp = super().checkpoint()
            self._size = self._cp.size
        else:
            self._size = 0
            self._publish(Checkpoint(self.origin, 0, EMPTY_ROOT))
        self._db.execute("DELETE FROM pending WHERE idx < ?", (self._size,))
        (top,) = self._db.execute("SELECT max(idx) FROM pending").fetchone()
        (low,) = self._db.execute("SELECT min(idx) FROM pending").fetchone()
        if low is not None and low != self._size:
            raise Conflict(f"ledger {self.path}: pending entries start at {low}, log size is {self._size}")
        self._next = self._size if top is None else int(top) + 1
        if self._next > self._size:
            self._new.set()

    # -- appending ---------------------------------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any]) -> int:
        """Append one fact; returns its index once it is durably on disk (not yet in a checkpoint).

        Concurrent callers are committed together, so many threads appending at once share fsyncs.
        """
        return self.append_many([(kind, payload)])[0]

    def append_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[int]:
        """Append several facts in one durable commit; returns their consecutive indexes."""
        data: list[bytes] = []
        keys: list[list[str | bytes]] = []
        stamp = entries.now()  # one clock read per call: the facts were handed over together
        for kind, payload in items:
            d = entries.encode(kind, payload, stamp)
            data.append(d)
            keys.append([leaf_hash(d), *entries.keys_of(payload)])
        if not data:
            return []
        req = _Request(data, keys)
        with self._cond:
            if self._closing:
                raise Conflict("ledger is closed")
            self._queue.append(req)
            self._cond.notify()
        first = req.future.result()
        return list(range(first, first + len(data)))

    def _sequence_loop(self) -> None:
        # The only writer of ledger.db (house style: funnel writes through one owner), so the
        # integrator's clean-up never waits on the appenders' write lock.
        while True:
            with self._cond:
                while not self._queue and not self._closing and self._trim_to <= self._trimmed:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                trim = self._trim_to
                if not batch and self._closing:
                    return
            try:
                self._commit(batch, trim)
            except BaseException as e:  # hand the failure to every waiting caller
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)

    def _commit(self, batch: list[_Request], trim: int = 0) -> None:
        rows: list[tuple[int, bytes]] = []
        lookups: list[tuple[str | bytes, int]] = []
        idx = self._next
        for r in batch:
            for d, ks in zip(r.data, r.keys, strict=True):
                rows.append((idx, d))
                lookups += [(k, idx) for k in ks]
                idx += 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO pending (idx, data) VALUES (?, ?)", rows)
            db.executemany("INSERT INTO lookup (key, idx) VALUES (?, ?)", lookups)
            if trim > self._trimmed:  # rows a published checkpoint covers are no longer needed
                db.execute("DELETE FROM pending WHERE idx < ?", (trim,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._trimmed = max(self._trimmed, trim)
        first = self._next
        self._next = idx
        for r in batch:
            r.future.set_result(first)
            first += len(r.data)
        self._new.set()

    # -- integrating -------------------------------------------------------------------------------

    def _integrate_loop(self) -> None:
        while not self._closing:
            self._new.wait()
            if self._closing:
                return
            started = time.monotonic()
            try:
                self.integrate()
            except Exception as e:  # keep the appends flowing; report and retry on the next tick
                self.last_error = e
                log.exception("ledger integration failed")
            # Batch: let appends accumulate until the next tick. Ticks are counted from the start of
            # the last integration, so a slow integration does not stretch the checkpoint period.
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def integrate(self) -> Checkpoint:
        """Integrate every sequenced entry now: bundles, tiles, then a signed checkpoint."""
        with self._integrate_lock:
            self._new.clear()
            old = self._size
            rows = self._idb.execute(
                "SELECT idx, data FROM pending WHERE idx >= ? ORDER BY idx", (old,)
            ).fetchall()
            if not rows:
                return self.checkpoint()
            data = [bytes(r[1]) for r in rows]
            if int(rows[0][0]) != old or int(rows[-1][0]) != old + len(rows) - 1:
                raise Conflict("pending entries are not contiguous with the log")
            new = old + len(data)
            batch = WriteBatch(self._pool)
            self._extend(ENTRIES, old, data, batch)
            hashes = [leaf_hash(d) for d in data]
            level, count = 0, old
            while hashes:  # each full tile's root is the next level's new hash
                done = self._extend(level, count, hashes, batch)
                hashes = [root_of(t) for t in done]
                count //= TILE_WIDTH
                level += 1
            batch.commit()  # every tile durable before the checkpoint that needs it
            cp = Checkpoint(self.origin, new, self.tiles.tree_hash(new))
            self._publish(cp)
            self._size = new
            with self._cond:  # the sequencer deletes the integrated rows in its next commit
                self._trim_to = new
                self._cond.notify()
            self._prune_partials(old, new)
            return cp

    def _extend(self, level: int | str, old_count: int, items: list[bytes], batch: WriteBatch) -> list[Any]:
        """Append `items` to a tile level (or the entry bundles) holding `old_count`; write every
        touched tile, full or partial. Returns the chunks that became full tiles (hash levels only)."""
        t0, have = divmod(old_count, TILE_WIDTH)
        if level == ENTRIES:
            existing = self.tiles.read_bundle(t0, have) if have else []
        else:
            existing = self.tiles.levels(int(level), t0, have)[0] if have else []
        combined = existing + items
        done: list[list[bytes]] = []
        for k in range(0, len(combined), TILE_WIDTH):
            chunk = combined[k : k + TILE_WIDTH]
            n = t0 + k // TILE_WIDTH
            if level == ENTRIES:
                self.tiles.write_bundle(n, chunk, batch)
            else:
                self.tiles.write(int(level), n, chunk, batch)
            if len(chunk) == TILE_WIDTH:
                done.append(chunk)
        return done

    def _prune_partials(self, old: int, new: int) -> None:
        """Drop partial tiles whose full tile now exists (the spec allows it; clients fall back)."""
        level, a, b = 0, old, new
        while b:
            for n in range(a // TILE_WIDTH, b // TILE_WIDTH):
                for lv in (level, ENTRIES) if level == 0 else (level,):
                    shutil.rmtree(self.path / (tile_path(lv, n) + ".p"), ignore_errors=True)
            a //= TILE_WIDTH
            b //= TILE_WIDTH
            level += 1

    def checkpoint(self) -> Checkpoint:
        """The latest checkpoint this writer published (from memory: the writer is the source)."""
        return self._cp

    def _publish(self, cp: Checkpoint) -> None:
        note = cp.sign(self.signer)
        self._cp = cp
        write_atomic(self.path / CHECKPOINT, note.encode())
        if self.witnesses and cp.size > 0:
            cosigned = cosign(self, note, self.witnesses, timeout=self.witness_timeout)
            if cosigned != note:
                write_atomic(self.path / CHECKPOINT, cosigned.encode())

    def flush(self) -> Checkpoint:
        """Wait for appends already acknowledged, integrate them, and return the new checkpoint."""
        return self.integrate()

    def close(self) -> None:
        """Integrate what is pending, stop the threads and release the folder."""
        if self._closing:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        self._sequencer.join()
        self._new.set()
        self._integrator.join()
        try:
            self.integrate()
            self._db.execute("DELETE FROM pending WHERE idx < ?", (self._size,))
        finally:
            self._pool.shutdown()
            self._db.close()
            self._idb.close()
            fcntl.flock(self._lockf, fcntl.LOCK_UN)
            self._lockf.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["Ledger", "LogView", "b64"]
