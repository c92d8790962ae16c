"""The map's index of a points or tracks dataset: time, position, H3 cell (and object) as NumPy arrays.

Why: a map asks the same questions many times a second (every tile of every pan, every step of a
replay), always "these points in this time window [in this box]". The lake is laid out for place
(rows sorted by H3 cell within time partitions of a month), so a one-day window reads a month of
files; at 10M points that is 100-500 ms a question. Here the located rows of a dataset are held in
memory as a few columns grouped by hour of their time (`Part.off`): a window is a contiguous slice
(its two edge hours masked), a heat map is a `bincount` of the slice's cell codes, a tile a box
test over the slice, the vehicles a sort of the last hour. No question reads the lake.

Only open reads (the provider and the operator) are answered here: a department reading through a
grant's scope (row filter, masks, fields) reads the lake through its scope, never this index.

Lifecycle:

* **Built at server start**, in a background thread (`MapIndex.start`, from the console router's
  lifespan), smallest dataset first: one streaming read of the lake whose batches are kept as they
  come (their own buffers: copying 10M rows into new arrays costs more than reading them). A request
  that arrives while its dataset is being read waits for it (up to `WAIT` s) rather than scanning
  the lake beside the read. Each batch is then grouped by hour in small background steps, taken
  between the map's requests (`BUSY`, `NUDGE`).
* **Kept on disk**: `<root>/console/map-index/<dataset>.arrow` (Arrow IPC, uncompressed, one
  record batch a part, with the lake watermark it reflects), written when the map is quiet; a
  restart maps that file (no copy, no sort) and reads only the rows ingested since.
* **Follows the lake**: when the lake's snapshot moves (asked at most every `CHECK` s), the rows
  ingested since the index's watermark are appended as a part, and the row count is checked (a
  lake that lost rows, say a replaced dataset, is read again from scratch; the lake answers
  meanwhile). Small parts are merged in the background.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from citybase.model.dataset import DatasetSpec, FieldType, Kind
from citybase.model.layout import H3, INGESTED_AT, stored_columns
from citybase.query._sql import literal, quote

if TYPE_CHECKING:
    from citybase.platform import CityBase

log = logging.getLogger("citybase.console")

HOUR = 3_600_000_000  # microseconds
#: The H3 resolution of the index's cell codes (heat maps at this resolution or coarser).
BASE_RES = 8
#: Seconds a request waits for its dataset's index being built before it reads the lake instead.
WAIT = 10.0
#: Merge the smallest parts together past this many parts...
MAX_PARTS = 64
#: ... or past this many parts under SMALL rows (appended flush after flush): MERGE_PARTS at a time.
SMALL = 100_000
MAX_SMALL = 8
MERGE_PARTS = 8
#: Datasets larger than this are left to the lake (memory: about 30 bytes a row).
MAX_ROWS = 60_000_000
#: Seconds between two writes of a dataset's index to disk (a merge after new rows rewrites it).
PERSIST_EVERY = 600.0
#: Background work waits while the map is asked questions (the last one less than BUSY s ago), a
#: step of it at least every NUDGE s.
BUSY = 0.3
NUDGE = 2.0
#: Writing the index to disk (a third of a second at 10M rows) waits for PERSIST_QUIET s of quiet,
#: or PERSIST_WAIT s after the index changed, or the server's stop.
PERSIST_QUIET = 2.0
PERSIST_WAIT = 600.0
FORMAT = 2
#: Seconds between two questions to the lake "did you move?" (by the background thread).
CHECK = 0.1
#: Rows a batch when reading the lake.
BATCH = 1 << 19

Arr = np.ndarray[Any, Any]


def eligible(spec: DatasetSpec) -> bool:
    """Points or tracks with a timestamp, stored with lon/lat and an H3 cell."""
    if spec.kind not in (Kind.points, Kind.tracks) or spec.time_field is None:
        return False
    if spec.field(spec.time_field).type is not FieldType.timestamp:
        return False
    names = {n for n, _, _ in stored_columns(spec)}
    return {"lon", "lat", H3} <= names


def to_us(t: datetime) -> int:
    """A naive UTC time as microseconds since the epoch (as DuckDB's epoch_us)."""
    return int(np.datetime64(t, "us").astype(np.int64))


def from_us(us: int) -> datetime:
    return np.datetime64(int(us), "us").astype(datetime)  # type: ignore[no-any-return]


def h3_parent(cells: Arr, res: int) -> Arr:
    """The parents at `res` of H3 ids (uint64) of a finer resolution, by bit arithmetic."""
    digits = sum(7 << ((15 - i) * 3) for i in range(res + 1, 16))
    out: Arr = (cells & np.uint64(~(0xF << 52) & (2**64 - 1))) | np.uint64(res << 52) | np.uint64(digits)
    return out


# -- parts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """Rows of a dataset: time (µs), lon, lat, cell code, object code; grouped by hour when `off` is set.

    With `off`, rows of hour `hour0 + i` are rows `off[i]:off[i + 1]` (in no order within the hour).
    """

    ts: Arr
    lon: Arr
    lat: Arr
    cell: Arr  # int32 code into the dataset's cell table, 0 where the row has no cell
    obj: Arr | None  # int32 code into the dataset's object table
    hour0: int = 0
    off: Arr | None = None

    @property
    def rows(self) -> int:
        return len(self.ts)

    def extent(self) -> tuple[int, int]:
        """The first and last time (µs) of a part with rows: from its first and last hour if grouped."""
        if self.off is None:
            return int(self.ts.min()), int(self.ts.max())
        first = int(np.argmax(self.off[1:] > 0))  # the first hour with rows
        last = int(np.searchsorted(self.off, self.rows, side="left")) - 1  # the last one
        return int(self.ts[: self.off[first + 1]].min()), int(self.ts[self.off[last] :].max())

    def window(self, t0: int | None, t1: int | None) -> tuple[slice, Arr | None]:
        """The rows with t0 <= time < t1: a slice, and a mask over it (None: all of the slice)."""
        lo, hi = 0, self.rows
        need0, need1 = t0 is not None, t1 is not None
        if self.off is not None:
            nh = len(self.off) - 1
            if t0 is not None:
                lo = int(self.off[min(max(t0 // HOUR - self.hour0, 0), nh)])
                need0 = t0 % HOUR != 0 and t0 > self.hour0 * HOUR
            if t1 is not None:
                hi = int(self.off[min(max((t1 - 1) // HOUR - self.hour0 + 1, 0), nh)])
                need1 = t1 % HOUR != 0
            if hi <= lo:
                return slice(0, 0), None
        mask = None
        if need0 or need1:
            ts = self.ts[lo:hi]
            if need0:
                mask = ts >= t0
            if need1:
                m1 = ts < t1
                mask = m1 if mask is None else mask & m1
        return slice(lo, hi), mask


def take(a: Arr, sl: slice, mask: Arr | None) -> Arr:
    return a[sl] if mask is None else a[sl][mask]


def by_hour(p: Part) -> Part:
    """The part with its rows grouped by hour (a radix sort on the hour, then one gather a column)."""
    if not p.rows:
        return Part(p.ts, p.lon, p.lat, p.cell, p.obj, 0, np.zeros(1, np.int64))
    hours = p.ts // HOUR
    h0 = int(hours.min())
    rel = hours - h0
    nh = int(rel.max()) + 1
    order = np.argsort(rel.astype(np.uint16) if nh <= 65536 else rel, kind="stable")
    off = np.zeros(nh + 1, np.int64)
    np.cumsum(np.bincount(rel, minlength=nh), out=off[1:])
    obj = p.obj[order] if p.obj is not None else None
    return Part(p.ts[order], p.lon[order], p.lat[order], p.cell[order], obj, h0, off)


def concat(parts: list[Part]) -> Part:
    if len(parts) == 1:
        return parts[0]
    objs = [p.obj for p in parts if p.obj is not None]
    return Part(
        np.concatenate([p.ts for p in parts]),
        np.concatenate([p.lon for p in parts]),
        np.concatenate([p.lat for p in parts]),
        np.concatenate([p.cell for p in parts]),
        np.concatenate(objs) if len(objs) == len(parts) else None,
    )


def piece(p: Part, lo: int, hi: int) -> Part:
    return Part(
        p.ts[lo:hi], p.lon[lo:hi], p.lat[lo:hi], p.cell[lo:hi], None if p.obj is None else p.obj[lo:hi]
    )


def merge(parts: list[Part]) -> Part:
    """One part grouped by hour. Appended rows are mostly recent: only the hours from the first hour
    they touch are sorted again; the sorted part's earlier hours are copied as they are."""
    main = parts[0]
    if main.off is None or len(parts) == 1:
        return by_hour(concat(parts))
    rest = concat(parts[1:])
    if not rest.rows:
        return main
    if not main.rows:
        return by_hour(rest)
    first = int(rest.ts.min() // HOUR)
    k = first - main.hour0
    if k <= 0:
        return by_hour(concat(parts))
    k = min(k, len(main.off) - 1)
    cut = int(main.off[k])
    tail = by_hour(concat([piece(main, cut, main.rows), rest]))
    assert tail.off is not None and tail.hour0 >= main.hour0 + k
    gap = tail.hour0 - (main.hour0 + k)  # empty hours between the kept ones and the sorted tail
    off = np.concatenate([main.off[:k], np.full(gap, cut, np.int64), tail.off + cut])
    whole = concat([piece(main, 0, cut), tail])
    return Part(whole.ts, whole.lon, whole.lat, whole.cell, whole.obj, main.hour0, off)


# -- one dataset ----------------------------------------------------------------------------------


@dataclass
class Codes:
    """A growing table of values (cells, objects) and the code of each."""

    values: list[Any] = field(default_factory=list)
    ids: dict[Any, int] = field(default_factory=dict)

    @classmethod
    def cells(cls) -> Codes:
        """A table of H3 cells whose code 0 stands for no cell (0 is no H3 id)."""
        return cls([0], {0: 0})

    def codes(self, local: Arr, uniques: Any) -> Arr:
        """Global codes for `local` codes into `uniques` (-1 stays -1)."""
        lut = np.empty(len(uniques) + 1, np.int32)
        lut[-1] = -1
        for i, v in enumerate(uniques.tolist() if hasattr(uniques, "tolist") else list(uniques)):
            code = self.ids.get(v)
            if code is None:
                code = self.ids[v] = len(self.values)
                self.values.append(v)
            lut[i] = code
        out: Arr = lut[local]
        return out


@dataclass(frozen=True)
class State:
    """What a question is answered from: an immutable snapshot of a dataset's index."""

    parts: tuple[Part, ...]
    cells: Arr  # uint64 ids of the cells at `res`, by code (code 0: no cell)
    objects: list[Any]
    version: int
    res: int = BASE_RES

    def windows(self, t0: int | None, t1: int | None) -> Iterator[tuple[Part, slice, Arr | None]]:
        for p in self.parts:
            sl, mask = p.window(t0, t1)
            if sl.stop > sl.start:
                yield p, sl, mask

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @cached_property
    def span(self) -> tuple[int, int] | None:
        """The first and last time held (µs), None when empty."""
        ends = [p.extent() for p in self.parts if p.rows]
        return (min(a for a, _ in ends), max(b for _, b in ends)) if ends else None

    def heat(self, t0: int | None, t1: int | None, res: int) -> tuple[Arr, Arr]:
        """Rows per H3 cell at `res` (<= the index's) in [t0, t1): (cell ids ascending, counts)."""
        n = len(self.cells)
        counts = np.zeros(n, np.int64)
        for p, sl, mask in self.windows(t0, t1):
            counts += np.bincount(take(p.cell, sl, mask), minlength=n)[:n]
        counts[:1] = 0  # code 0: rows without a cell
        cells = self.cells
        if n and self.res != res:
            enc = pa.array(h3_parent(cells, res)).dictionary_encode()
            cells = enc.dictionary.to_numpy()
            counts = np.bincount(enc.indices.to_numpy(), weights=counts, minlength=len(cells)).astype(
                np.int64
            )
        keep = counts > 0
        cells, counts = cells[keep], counts[keep]
        order = np.argsort(cells)
        return cells[order], counts[order]

    def latest(self, t0: int, t1: int) -> tuple[Arr, Arr, Arr, Arr]:
        """Each object's newest row in [t0, t1): (object codes, times, lon, lat), by object code."""
        got = [
            (take(p.obj, sl, m), take(p.ts, sl, m), take(p.lon, sl, m), take(p.lat, sl, m))
            for p, sl, m in self.windows(t0, t1)
            if p.obj is not None
        ]
        if not got:
            e = np.zeros(0, np.int64)
            return e, e, np.zeros(0), np.zeros(0)
        obj, ts, lon, lat = (np.concatenate(c) for c in zip(*got, strict=True))
        order = np.lexsort((ts, obj))  # by object, then time: the last of each object is its newest
        obj, ts, lon, lat = obj[order], ts[order], lon[order], lat[order]
        last = np.ones(len(obj), bool)
        last[:-1] = obj[1:] != obj[:-1]
        return obj[last], ts[last], lon[last], lat[last]

    def bins(
        self,
        t0: int | None,
        t1: int | None,
        box: tuple[float, float, float, float],
        mbox: tuple[float, float, float, float],
        n: int,
    ) -> tuple[Arr, Arr, Arr]:
        """Points in [t0, t1) and the lon/lat `box` (xmin <= lon < xmax...) binned on an `n` x `n`
        raster of the web-mercator box `mbox`: (bin x, bin y (from the south), points), non-empty bins.

        The same arithmetic as the SQL tiles (tiles.py): a bin is floor((mercator - corner) / size).
        """
        from citybase.console.geo import ORIGIN, RADIUS

        x0, y0, x1, y1 = box
        mx0, my0, mx1, _ = mbox
        size = (mx1 - mx0) / n
        w = n + 2  # a point on the box's edge may round into the bin just outside
        acc = np.zeros(w * w, np.int64)
        for p, sl, m in self.windows(t0, t1):
            lon, lat = take(p.lon, sl, m), take(p.lat, sl, m)
            inside = (lon >= x0) & (lon < x1) & (lat >= y0) & (lat < y1)
            lon, lat = lon[inside], lat[inside]
            if not len(lon):
                continue
            bx = np.floor((lon * ORIGIN / 180.0 - mx0) / size)
            by = np.floor((np.log(np.tan((90.0 + lat) * np.pi / 360.0)) * RADIUS - my0) / size)
            bx = np.clip(bx, -1, n).astype(np.int64) + 1
            by = np.clip(by, -1, n).astype(np.int64) + 1
            acc += np.bincount(bx * w + by, minlength=w * w)
        nz = np.flatnonzero(acc)
        return nz // w - 1, nz % w - 1, acc[nz]


class DatasetIndex:
    """The index of one dataset: its parts, cell and object tables, and its place in the lake."""

    def __init__(self, cb: CityBase, dataset: str, spec: DatasetSpec) -> None:
        self.cb, self.dataset, self.spec = cb, dataset, spec
        self.res = min(BASE_RES, cb.query.h3_resolution)
        self.ready = threading.Event()
        self.failed = False
        self.skip = False  # too large to hold: the lake answers
        self.lock = threading.Lock()  # one refresh or merge at a time
        self.cells, self.objs = Codes.cells(), Codes()
        self.state = State((), np.zeros(1, np.uint64), [], 0, self.res)
        self.snapshot = -2
        self.watermark: datetime | None = None
        self.total = 0  # rows of the lake table (located or not) the index accounts for
        self.persisted: Path | None = None
        self.saved = -PERSIST_EVERY  # monotonic time of the last write to disk
        self.dirty = False  # changed since written to disk
        self.changed = time.monotonic()  # when it last changed
        #: Called between the steps of a long piece of background work (MapIndex: waits while the
        #: map is busy).
        self.pause: Callable[[], None] = lambda: None
        self.root: Path | None = None  # where it is kept on disk

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.state.parts)

    # -- reading the lake -----------------------------------------------------------------------

    def _select(self) -> str:
        s = self.spec
        tf = quote(s.time_field or "ts")
        cols = [f"{tf}::TIMESTAMP AS t", "lon", "lat", f"coalesce({quote(H3)}, 0::UBIGINT) AS h3"]
        if s.object_field:
            cols.append(f"{quote(s.object_field)} AS obj")
        where = f"lon IS NOT NULL AND lat IS NOT NULL AND {tf} IS NOT NULL"
        return f"SELECT {', '.join(cols)} FROM {self.cb.lake.table(self.dataset)} WHERE {where}"

    def _parts(self, reader: pa.RecordBatchReader) -> list[Part]:
        """Parts from the rows of `_select`, one a batch as DuckDB hands them over: the columns are
        the batches' own buffers (no copy: copying 10M rows into fresh arrays takes longer than
        reading them), plus each batch's cell and object codes."""
        bits = np.uint64(~(0xF << 52) & (2**64 - 1))
        res = np.uint64(self.res << 52 | sum(7 << ((15 - i) * 3) for i in range(self.res + 1, 16)))
        out = []
        for batch in reader:
            if not batch.num_rows:
                continue
            h3 = batch.column(3).to_numpy()
            parent = np.bitwise_and(h3, bits)
            np.bitwise_or(parent, res, out=parent)
            enc = pa.array(parent).dictionary_encode()
            cell = self.cells.codes(enc.indices.to_numpy(), enc.dictionary.to_pylist())
            zero = h3 == 0
            if zero.any():
                cell[zero] = 0
            obj = None
            if self.spec.object_field:
                enc = batch.column(4).dictionary_encode()
                m = len(enc.dictionary)
                got = enc.indices.fill_null(m).to_numpy()
                obj = self.objs.codes(got, [*enc.dictionary.to_pylist(), None])
            ts = batch.column(0).to_numpy().view(np.int64)
            out.append(Part(ts, batch.column(1).to_numpy(), batch.column(2).to_numpy(), cell, obj))
        return out

    def _publish(self, parts: tuple[Part, ...]) -> None:
        cells = np.array(self.cells.values, dtype=np.uint64)
        self.state = State(parts, cells, list(self.objs.values), self.state.version + 1, self.res)

    def build(self, root: Path | None) -> None:
        """Map the index kept on disk (and catch up), else read the lake (sorted by hour later)."""
        t = time.perf_counter()
        how = "from disk"
        if not (root is not None and self._load(root) and self.refresh(force=True)):
            how = "from the lake"
            self._read_all()
        self.ready.set()
        log.info(
            "map index of %s: %s rows %s in %.2f s", self.dataset, self.rows, how, time.perf_counter() - t
        )

    def _read_all(self) -> None:
        snap = self.cb.lake.snapshot()
        table = self.cb.lake.table(self.dataset)
        with self.cb.query.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            total, mark = cur.execute(f"SELECT count(*), max({quote(INGESTED_AT)}) FROM {table}").fetchall()[
                0
            ]
            with self.lock:
                self.cells, self.objs, self.failed = Codes.cells(), Codes(), False
                parts = self._parts(cur.execute(self._select()).to_arrow_reader(BATCH))
                cur.execute("COMMIT")
                self.snapshot, self.watermark, self.total = snap, mark, int(total)
                self._publish(tuple(parts))
                self.dirty, self.changed = True, time.monotonic()

    def refresh(self, *, force: bool = False, snap: int | None = None) -> bool:
        """Append the rows ingested since the watermark if the lake moved (its snapshot `snap`, asked
        here if not given); False: the lake must answer."""
        if snap is None:
            snap = self.cb.lake.snapshot()
        if snap == self.snapshot and not force:
            return not self.failed
        with self.lock:
            if snap == self.snapshot and not force:
                return not self.failed
            return self._catch_up(snap)

    def _catch_up(self, snap: int) -> bool:
        """Read the rows ingested since the watermark (the caller holds the lock)."""
        table = self.cb.lake.table(self.dataset)
        ing = quote(INGESTED_AT)
        since = f"{ing} > {literal(self.watermark)}" if self.watermark is not None else "true"
        with self.cb.query.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            total = int(cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            new, mark = cur.execute(f"SELECT count(*), max({ing}) FROM {table} WHERE {since}").fetchall()[0]
            parts = []
            if new:
                parts = self._parts(cur.execute(f"{self._select()} AND {since}").to_arrow_reader(BATCH))
            cur.execute("COMMIT")
        if total != self.total + int(new):
            # Rows left the lake (a replaced dataset...): an index of appends cannot follow that.
            log.warning("map index of %s: the lake changed under it; it is read again", self.dataset)
            self.failed = True
            return False
        if parts:
            self._publish((*self.state.parts, *parts))
            self.dirty, self.changed = True, time.monotonic()
        if new:
            self.watermark = mark
        self.snapshot, self.total = snap, total
        return True

    # -- sorting, merging and keeping on disk ---------------------------------------------------

    def _job(self, quiet: float) -> Callable[[], None] | None:
        """The background work that applies first, if any: merge the smallest parts when there are
        too many (the rows appended flush after flush); group a part's rows by hour (a batch of the
        first read: tens of ms); write the index to disk (when the map has been quiet for
        PERSIST_QUIET s, or it waited PERSIST_WAIT s)."""
        parts = self.state.parts
        if len(parts) > MAX_PARTS or sum(p.rows < SMALL for p in parts) > MAX_SMALL:
            group = sorted(parts, key=lambda p: p.rows)[:MERGE_PARTS]
            return lambda: self._replace(group, merge(group))
        loose = next((p for p in parts if p.off is None), None)
        if loose is not None:
            return lambda: self._replace([loose], by_hour(loose))
        now = time.monotonic()
        root = self.root
        due = now - self.saved >= PERSIST_EVERY and (
            quiet >= PERSIST_QUIET or now - self.changed >= PERSIST_WAIT
        )
        if self.dirty and root is not None and due:
            return lambda: self._save(root)
        return None

    def has_work(self, quiet: float = 0.0) -> bool:
        return self._job(quiet) is not None

    def work(self, quiet: float = float("inf")) -> bool:
        """One step of background work; False when there was none."""
        job = self._job(quiet)
        if job is not None:
            job()
        return job is not None

    def compact(self) -> None:
        """Do all the background work now (for tests and benchmarks)."""
        while self.work():
            pass

    def _replace(self, old: list[Part], new: Part) -> None:
        """Put `new` where the first of `old` was, without the others (parts are only appended meanwhile)."""
        with self.lock:
            gone = {id(p) for p in old}
            first = next(i for i, p in enumerate(self.state.parts) if id(p) in gone)
            keep = [p for p in self.state.parts if id(p) not in gone]
            keep.insert(first, new)
            self._publish(tuple(keep))
            self.dirty, self.changed = True, time.monotonic()

    def _fingerprint(self) -> str:
        return json.dumps([FORMAT, self.res, self.spec.model_dump(mode="json")], sort_keys=True)

    def _path(self, root: Path) -> Path:
        return root / f"{self.dataset}.arrow"

    def _save(self, root: Path) -> None:
        """Write the index (its parts grouped by hour, one record batch each) to disk, then rename."""
        with self.lock:
            parts = [p for p in self.state.parts if p.off is not None]
            if len(parts) != len(self.state.parts):
                return
            meta = {
                "fingerprint": self._fingerprint(),
                "watermark": self.watermark.isoformat() if self.watermark else None,
                "total": self.total,
                "cells": [int(c) for c in self.cells.values],
                "objects": list(self.objs.values),
                "hour0": [p.hour0 for p in parts],
            }
            self.dirty = False
        try:
            text = json.dumps(meta)
        except TypeError:
            return  # object ids JSON cannot hold: not kept on disk
        try:
            root.mkdir(parents=True, exist_ok=True)
            names = ["ts", "lon", "lat", "cell", *(["obj"] if self.spec.object_field else [])]
            batches = [
                pa.record_batch([p.ts, p.lon, p.lat, p.cell, *([p.obj] if p.obj is not None else [])], names)
                for p in parts
            ]
            if not batches:
                return
            schema = batches[0].schema.with_metadata({"citybase": text})
            tmp = self._path(root).with_suffix(f".{os.getpid()}.tmp")
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, schema) as w:
                for b in batches:
                    w.write_batch(b)
                    self.pause()  # a batch at a time, between the map's requests
            tmp.replace(self._path(root))
            self.persisted, self.saved = self._path(root), time.monotonic()
        except OSError:
            log.exception("could not keep the map index of %s on disk", self.dataset)

    def _load(self, root: Path) -> bool:
        """Map the index kept on disk (no copy); False when there is none or it is not this dataset's."""
        path = self._path(root)
        if not path.is_file():
            return False
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
            meta = json.loads((reader.schema.metadata or {})[b"citybase"])
            if meta["fingerprint"] != self._fingerprint():
                return False
            cells, objs = Codes(), Codes()
            for c in meta["cells"]:
                cells.ids[c] = len(cells.values)
                cells.values.append(c)
            for o in meta["objects"]:
                objs.ids[o] = len(objs.values)
                objs.values.append(o)
            parts = []
            for i, h0 in enumerate(meta["hour0"]):
                b = reader.get_batch(i)
                ts = b.column(0).to_numpy()
                edges = (np.arange(int(ts[-1] // HOUR) - h0 + 2, dtype=np.int64) + h0) * HOUR
                off = np.searchsorted(ts // HOUR * HOUR, edges).astype(np.int64)
                obj = b.column(4).to_numpy() if b.num_columns > 4 else None
                parts.append(
                    Part(
                        ts,
                        b.column(1).to_numpy(),
                        b.column(2).to_numpy(),
                        b.column(3).to_numpy(),
                        obj,
                        h0,
                        off,
                    )
                )
        except (OSError, KeyError, ValueError, TypeError, IndexError, pa.ArrowException):
            log.exception("the map index of %s on disk is unreadable; it is read from the lake", self.dataset)
            return False
        with self.lock:
            self.cells, self.objs = cells, objs
            self.watermark = datetime.fromisoformat(meta["watermark"]) if meta["watermark"] else None
            self.total = int(meta["total"])
            self._publish(tuple(parts))
            self.persisted, self.saved, self.dirty = path, time.monotonic(), False
        return True


# -- every dataset of an app ----------------------------------------------------------------------


class MapIndex:
    """The map indexes of one app: built at start in a background thread, then kept up to date."""

    def __init__(self, cb: CityBase, root: Path | None = None) -> None:
        self.cb, self.root = cb, root
        self._lock = threading.Lock()
        self._sets: dict[str, DatasetIndex] = {}
        self._queue: list[DatasetIndex] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_use = 0.0  # monotonic time of the last question
        self._polled = 0.0  # monotonic time the lake's snapshot was last asked

    def start(self) -> None:
        """Index every eligible dataset now, in the background, smallest first."""
        sizes = [(self._count(n), n) for n, spec in sorted(self.cb.datasets.items()) if eligible(spec)]
        for _, name in sorted(sizes):
            self._schedule(name)
        self._ensure_thread()

    def stop(self) -> None:
        """Stop the background thread; write the indexes that changed since written to disk."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for ix in list(self._sets.values()):
            if ix.ready.is_set() and not ix.failed and ix.dirty and ix.root is not None:
                try:
                    ix.compact()  # what is left to group by hour (and the write, if due)
                    if ix.dirty:
                        ix._save(ix.root)
                except Exception:
                    log.exception("could not keep the map index of %s on disk", ix.dataset)

    def _count(self, name: str) -> int:
        try:
            return int(self.cb.sql(f"SELECT count(*) FROM {self.cb.lake.table(name)}").column(0)[0].as_py())
        except Exception:  # a dataset the lake cannot count is left to the lake
            return MAX_ROWS + 1

    def _schedule(self, name: str, *, again: bool = False) -> DatasetIndex | None:
        spec = self.cb.datasets.get(name)
        if spec is None or not eligible(spec):
            return None
        with self._lock:
            ix = self._sets.get(name)
            if ix is None or ix.spec != spec or (again and ix.ready.is_set() and ix.failed and not ix.skip):
                ix = self._sets[name] = DatasetIndex(self.cb, name, spec)
                self._queue.append(ix)
                self._wake.set()
        return ix

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="citybase-map-index", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        nudged = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                job = self._queue.pop(0) if self._queue else None
                if job is None:
                    self._wake.clear()
            if job is not None:
                self._build(job)
                continue
            self._poll()
            quiet = time.monotonic() - self.last_use
            busy = [
                ix
                for ix in list(self._sets.values())
                if ix.ready.is_set() and not ix.failed and ix.has_work(quiet)
            ]
            if not busy:
                self._wake.wait(CHECK)
                continue
            # Small steps, each between the map's questions rather than in the middle of them.
            if quiet < BUSY and time.monotonic() - nudged < NUDGE:
                self._stop.wait(BUSY / 3)
                continue
            nudged = time.monotonic()
            try:
                busy[0].work(quiet)
            except Exception:
                busy[0].failed = True
                log.exception("background work on the map index of %s failed", busy[0].dataset)

    def _pause(self) -> None:
        """Wait while the map is being asked questions (NUDGE s at most)."""
        t = time.monotonic()
        while time.monotonic() - self.last_use < BUSY and time.monotonic() - t < NUDGE:
            if self._stop.wait(BUSY / 3):
                return

    def _poll(self) -> None:
        """Every CHECK s: if the lake's snapshot moved, bring each index up to date (here, so that
        a map request never waits on the lake)."""
        now = time.monotonic()
        if now - self._polled < CHECK:
            return
        self._polled = now
        try:
            snap = self.cb.lake.snapshot()
        except Exception:
            log.exception("could not ask the lake for its snapshot")
            return
        for ix in list(self._sets.values()):
            if ix.ready.is_set() and not ix.failed and ix.snapshot != snap:
                try:
                    ix.refresh(snap=snap)
                except Exception:
                    log.exception("could not bring the map index of %s up to date", ix.dataset)

    def _build(self, job: DatasetIndex) -> None:
        try:
            if self._count(job.dataset) > MAX_ROWS:
                job.failed = job.skip = True
            else:
                job.root, job.pause = self.root, self._pause
                job.build(self.root)
        except Exception:  # the map reads the lake; the log says why the index is missing
            job.failed = True
            log.exception("could not build the map index of %s", job.dataset)
        finally:
            job.ready.set()

    def get(self, dataset: str, *, wait: float = WAIT, fresh: bool = False) -> State | None:
        """The dataset's index, as up to date with the lake as the background thread made it (about
        CHECK s behind a flush), or brought up to date now if `fresh`; None where the lake must
        answer."""
        spec = self.cb.datasets.get(dataset)
        if spec is None or not eligible(spec):
            return None
        self.last_use = time.monotonic()
        with self._lock:
            ix = self._sets.get(dataset)
        if ix is None or ix.spec != spec or (ix.ready.is_set() and ix.failed and not ix.skip):
            ix = self._schedule(dataset, again=True)
            self._ensure_thread()
        if ix is None or not ix.ready.wait(wait) or ix.failed:
            return None
        if fresh:  # else the background thread follows the lake (`_poll`)
            try:
                if not ix.refresh():
                    return None
            except Exception:
                log.exception("could not bring the map index of %s up to date", dataset)
                return None
        elif ix.failed:
            return None
        if ix.has_work(0.0):
            self._wake.set()
        return ix.state

    def status(self) -> dict[str, dict[str, Any]]:
        """Per dataset: ready or not, rows held, kept on disk or not."""
        with self._lock:
            sets = dict(self._sets)
        return {
            name: {
                "ready": ix.ready.is_set() and not ix.failed,
                "rows": ix.rows,
                "on_disk": ix.persisted is not None,
            }
            for name, ix in sorted(sets.items())
        }


def map_index(state: Any) -> MapIndex:
    """The app's map index (one per app, made on first use)."""
    ix = getattr(state, "console_index", None)
    if not isinstance(ix, MapIndex):
        cb = state.cb
        ix = MapIndex(cb, Path(cb.root) / "console" / "map-index")
        state.console_index = ix
    return ix
