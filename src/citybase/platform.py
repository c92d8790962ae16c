"""`CityBase`: one city's platform, embedded in this process.

It wires the boxes of the flow together (gateway, log, places, store, query) and is what the CLI,
the HTTP API and notebooks use. Everything it does is a call into one of those boxes.

>>> import tempfile
>>> with CityBase.open(tempfile.mkdtemp()) as cb:
...     cb.datasets
{}
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from citybase.deployment import Deployment
from citybase.errors import CitybaseError, Conflict
from citybase.gateway.ingest import IngestResult, ingest_rows
from citybase.gateway.load import LoadResult, file_digest, groups, load_files
from citybase.gateway.readers.base import ReadOptions
from citybase.ledger import INGEST, QUARANTINE, RETIRE, Ledger
from citybase.log.append_log import AppendLog
from citybase.log.compact import compact
from citybase.meta import meta_url as default_meta_url
from citybase.meta import open_meta
from citybase.model.city import CitySpec, Level
from citybase.model.dataset import DatasetSpec
from citybase.places.city import City, Layer
from citybase.registry import Registry
from citybase.store.by_object import refresh as refresh_copy
from citybase.store.lake import Lake, Location, load_layers, save_layers

if TYPE_CHECKING:
    from citybase.fusion.service import FusionService
    from citybase.query.engine import QueryEngine
    from citybase.share import Sharing


#: Lake files listed per ledger entry (about 200 bytes each, under the 64 KiB entry limit).
FILES_PER_ENTRY = 150
#: How long `maintain` keeps the lake's past snapshots, and files once merged away: long enough
#: for any reader, change feed or auditor's rehash to finish (docs/adr/0009).
HISTORY = timedelta(days=1)
#: The least age of a file that no commit names before `maintain` deletes it: a write under way
#: (another root's, on a shared folder) writes its files before it commits them.
ORPHAN_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class Maintenance:
    """What one `CityBase.maintain` did."""

    #: Small files merged into larger ones.
    merged: int
    #: Rows added to the datasets' copies by object (store/by_object.py).
    copied: int
    #: Snapshots forgotten (older than the history kept).
    expired: int
    #: Files deleted: merged away, and in no kept snapshot (listed in the ledger first).
    removed: int
    #: Files deleted that no commit named (a write stopped by a crash), older than the history.
    orphans: int


class CityBase:
    """The platform over one root folder (embedded) or a given lake location (cluster catalog)."""

    def __init__(
        self,
        root: str | Path,
        *,
        location: Location | None = None,
        threads: int | None = None,
        memory_limit: str | None = None,
        meta_url: str | None = None,
    ):
        """`threads` and `memory_limit` (e.g. "4GB") bound DuckDB; unset, it takes 80% of RAM.

        `meta_url` is the metadata database (registry, grants, usage); embedded, `<root>/meta.sqlite`.
        Unset, `location` and `meta_url` come from the root's `deployment.yaml` (deployment.py).
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        deployment = Deployment.read(self.root)
        if location is None and deployment.catalog:
            data_path = str(deployment.data_path or "")
            location = Location(deployment.catalog, data_path if data_path.endswith("/") else data_path + "/")
        self.meta = open_meta(meta_url or deployment.meta_url or default_meta_url(self.root))
        self.registry = Registry(self.meta)
        self.lake = Lake(location or Location.embedded(self.root), threads=threads, memory_limit=memory_limit)
        self.log = AppendLog(self.root / "log.sqlite")
        self.log.ensure_after(self.lake.watermark(self.log.id))
        self._city: City | None = None
        self._city_loaded = False
        self._compact_lock = threading.Lock()
        self._maintain_lock = threading.Lock()
        self._query: QueryEngine | None = None
        self._ledger: Ledger | None = None
        self._ledger_lock = threading.Lock()
        self._share: Sharing | None = None
        self._share_lock = threading.Lock()
        self._fusion: FusionService | None = None
        self._fusion_lock = threading.Lock()
        # Replay what a crash may have left between the log and the lake.
        self.flush()

    @classmethod
    def open(cls, root: str | Path, **kw: Any) -> CityBase:
        return cls(root, **kw)

    def close(self) -> None:
        if self._share is not None:
            self._share.close()  # buffered usage to the database and its facts to the ledger
        self.flush()
        if self._ledger is not None:
            self._ledger.close()
        self.log.close()
        self.lake.close()
        self.meta.dispose()

    def __enter__(self) -> CityBase:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the city model -----------------------------------------------------------------------

    @property
    def city(self) -> City | None:
        if not self._city_loaded:
            stored = load_layers(self.lake)
            if stored is not None:
                settings, layers = stored
                self._city = City(
                    settings["name"],
                    settings["timezone"],
                    settings["h3_resolution"],
                    {Level(k): Layer.from_arrow(Level(k), t) for k, t in layers.items()},
                )
            self._city_loaded = True
        return self._city

    def setup_city(self, city: City | CitySpec | str | Path) -> City:
        """Set up (or replace) the city's area layers from a declaration file, a spec or a City."""
        if isinstance(city, str | Path):
            city = CitySpec.from_file(city)
        if isinstance(city, CitySpec):
            city = City.from_spec(city)
        settings = {"name": city.name, "timezone": city.timezone, "h3_resolution": city.h3_resolution}
        save_layers(self.lake, settings, {lvl.value: layer.to_arrow() for lvl, layer in city.layers.items()})
        self._city, self._city_loaded = city, True
        self._query = None  # the engine holds the city it was made with
        return city

    # -- the ledger ---------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The platform's tamper-evident ledger (opened on first use; one writer per root)."""
        with self._ledger_lock:
            if self._ledger is None:
                name = self.city.name if self.city is not None else self.root.resolve().name
                slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "city"
                try:
                    self._ledger = Ledger.open(self.root / "ledger", origin=f"citybase.example/{slug}")
                except Conflict as e:
                    raise Conflict(
                        f"{e}: another process (a running `citybase serve`?) writes this platform; "
                        "push rows through it, or stop it first"
                    ) from e
            return self._ledger

    def record(self, kind: str, payload: dict[str, Any]) -> int:
        """Append one fact to the ledger (ingest, grant, revoke, use, quarantine); returns its index."""
        return self.ledger.append(kind, payload)

    def _record_ingest(self, facts: list[dict[str, Any]], files: list[dict[str, str]]) -> list[int]:
        """Ingest facts of one commit, the first with the lake files the commit wrote; returns the
        facts' indexes (files loaded together share a commit: each keeps its own fact).

        A ledger entry holds at most 64 KiB: a load into many partitions writes hundreds of files,
        so the list continues in further entries of the first fact's batch (`part` 1, 2, ...),
        appended together with the facts.
        """
        chunks = [files[i : i + FILES_PER_ENTRY] for i in range(0, len(files), FILES_PER_ENTRY)] or [[]]
        entries = [(INGEST, {**facts[0], "files": chunks[0]})]
        entries += [(INGEST, {**fact, "files": []}) for fact in facts[1:]]
        entries += [
            (INGEST, {"batch": facts[0].get("batch"), "part": n, "rows": 0, "files": chunk})
            for n, chunk in enumerate(chunks[1:], start=1)
        ]
        return self.ledger.append_many(entries)[: len(facts)]

    def _lake_files(self, mark: int) -> list[dict[str, str]]:
        root = Path(self.lake.location.data_path)
        return [
            {"table": table, "path": rel, "sha256": file_digest(root / rel)}
            for table, rel in self.lake.files_since(mark)
            if (root / rel).is_file()
        ]

    # -- sharing ------------------------------------------------------------------------------

    @property
    def share(self) -> Sharing:
        """Catalog, access requests and grants, scoped reads, aggregates, usage metering."""
        with self._share_lock:
            if self._share is None:
                from citybase.share import Sharing

                self._share = Sharing(self, on_fact=self.record)
            return self._share

    # -- fusion -------------------------------------------------------------------------------

    @property
    def fusion(self) -> FusionService:
        """The platform's entity store (ROOT/fusion), fed from declared datasets; reads through grants."""
        with self._fusion_lock:
            if self._fusion is None:
                from citybase.fusion.service import FusionService

                self._fusion = FusionService(self)
            return self._fusion

    # -- datasets -----------------------------------------------------------------------------

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return self.lake.datasets

    def declare(
        self, spec: DatasetSpec | str | Path | dict[str, Any], *, replace: bool = False
    ) -> DatasetSpec:
        """Declare a dataset (from a spec, a YAML/JSON file or a dict); idempotent."""
        if isinstance(spec, str | Path):
            spec = DatasetSpec.from_file(spec)
        elif isinstance(spec, dict):
            spec = DatasetSpec.from_dict(spec)
        self.lake.create_dataset(spec, replace=replace)
        return spec

    # -- writes -------------------------------------------------------------------------------

    def load(
        self,
        dataset: str,
        path: str | Path,
        *,
        format: str | None = None,
        options: ReadOptions | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoadResult:
        """Bulk-load a file into a dataset (atomic, idempotent by content); recorded in the ledger."""
        each = None if progress is None else (lambda _path, n: progress(n))
        return self._load_together(dataset, [Path(path)], format, options, each)[0]

    def load_many(
        self,
        dataset: str,
        paths: Iterable[str | Path],
        *,
        format: str | None = None,
        options: ReadOptions | None = None,
        progress: Callable[[Path, int], None] | None = None,
        done: Callable[[LoadResult], None] | None = None,
    ) -> list[LoadResult]:
        """Bulk-load files into a dataset, as `load` does each: small files share a commit.

        A small file's load is mostly its commit (a folder of 10-row CSV files: about 40 ms a
        file alone): small files go together (gateway/load.py `groups`), larger ones alone. If a
        group fails, its files are loaded again one by one, so that each file before the bad one
        is added and the error names the bad one, as with `load`. `progress(path, rows_read)` is
        called per chunk read, `done(result)` per file as its commit lands.
        """
        out: list[LoadResult] = []
        for group in groups(Path(p) for p in paths):
            try:
                results = self._load_together(dataset, group, format, options, progress)
            except CitybaseError:
                if len(group) == 1:
                    raise
                results = []
                for p in group:  # the files before the bad one are added; the bad one raises
                    results += self._load_together(dataset, [p], format, options, progress)
                    if done is not None:
                        done(results[-1])
                out += results
                continue
            out += results
            if done is not None:
                for r in results:
                    done(r)
        return out

    def _load_together(
        self,
        dataset: str,
        paths: list[Path],
        format: str | None,
        options: ReadOptions | None,
        progress: Callable[[Path, int], None] | None,
    ) -> list[LoadResult]:
        """Load files in one commit, and record each in the ledger (the commit's lake files
        with the first)."""
        self.ledger  # noqa: B018 - fail before loading, not after, if another process holds the ledger
        before = self.lake.file_mark()
        results = load_files(
            self.lake, self.city, dataset, paths, format=format, options=options, progress=progress
        )
        loaded = [r for r in results if not r.skipped]
        if not loaded:
            return results
        facts = [
            {
                "dataset": dataset,
                "batch": r.batch,
                "digest": r.digest,
                "source": r.source,
                "rows": r.added,
                "quarantined": r.quarantined,
                "duplicates": r.duplicates,
            }
            for r in loaded
        ]
        indexes = self._record_ingest(facts, self._lake_files(before))
        for r, index in zip(loaded, indexes, strict=True):
            r.ledger_index = index
            if r.quarantined:
                self.record(
                    QUARANTINE,
                    {
                        "dataset": dataset,
                        "batch": r.batch,
                        "rows": r.quarantined,
                        "reasons": dict(r.reasons.most_common(50)),  # (the entry stays small)
                    },
                )
        return results

    def ingest(
        self,
        dataset: str,
        rows: pa.Table | list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        source: str = "api",
    ) -> IngestResult:
        """Durably accept a small batch (acknowledged = fsynced); it reaches the lake on `flush`."""
        self.ledger  # noqa: B018 - fail before accepting, not after, if another process holds the ledger
        tz = self.city.timezone if self.city is not None else "UTC"
        res = ingest_rows(
            self.log, self.lake.spec(dataset), rows, tz=tz, source=source, idempotency_key=idempotency_key
        )
        if not res.duplicate:
            fact = {
                "dataset": dataset,
                "batch": res.batch,
                "digest": res.digest,
                "source": source,
                "rows": res.accepted,
                "quarantined": len({r["line"] for r in res.rejected}),
            }
            res.ledger_index = self.record(INGEST, fact)
        return res

    def flush(self) -> int:
        """Compact the append log into the lake; returns the number of log entries applied.

        The lake files each compaction writes are listed in the ledger with their SHA-256, so the
        audit detects a changed file (the batches themselves were recorded when acknowledged).
        """
        with self._compact_lock:
            before = self.lake.file_mark()
            applied = compact(self.log, self.lake, lambda: self.city)
            if applied:
                fact = {"batch": f"compaction-{self.lake.watermark(self.log.id)}", "rows": 0}
                self._record_ingest([fact], self._lake_files(before))
            return applied

    def maintain(
        self, keep: timedelta | None = HISTORY, *, progress: Callable[[str, int], None] | None = None
    ) -> Maintenance:
        """Merge the lake's small files, and bring the datasets' copies by object up to date
        (docs/adr/0010); forget the snapshots older than `keep`, and delete the
        files merged away longer ago than that, and those older than that which no commit named
        (None: keep every snapshot and file).

        Flushes go on meanwhile: the lake commits one table's merge at a time. The merged files
        are listed in the ledger like any other; the deleted ones are listed first, in a `retire`
        entry, so that the audit knows they are gone on purpose (docs/adr/0009).
        `progress(table, files)` follows the merges (`Lake.merge_small_files`).
        """
        with self._maintain_lock:
            snapshot, before = self.lake.snapshot(), self.lake.file_mark()
            try:
                merged = self.lake.merge_small_files(progress)
                copied = sum(refresh_copy(self.lake, name) for name in self.lake.datasets)
            finally:
                # What was committed is listed even when a later step fails (each commits apart).
                files = self._lake_files(before)
                if files:
                    self._record_ingest([{"batch": f"merge-{snapshot}", "rows": 0}], files)
            if keep is None:
                return Maintenance(merged, copied, 0, 0, 0)
            cutoff = datetime.now(UTC) - keep
            expired = self.lake.expire_snapshots(cutoff)
            gone = self.lake.retired_files(cutoff)
            if gone:
                batch = f"retire-{self.lake.snapshot()}"
                chunks = [gone[i : i + FILES_PER_ENTRY] for i in range(0, len(gone), FILES_PER_ENTRY)]
                self.ledger.append_many(
                    [
                        (RETIRE, {"batch": batch, "part": n, "files": [{"path": p} for p in chunk]})
                        for n, chunk in enumerate(chunks)
                    ]
                )
            removed = self.lake.remove_retired_files(cutoff) if gone else 0
            # Never a young one, whatever `keep`: it may be a write under way in another process.
            orphans = self.lake.remove_orphans(min(cutoff, datetime.now(UTC) - ORPHAN_AGE))
            return Maintenance(merged, copied, expired, removed, orphans)

    # -- reads --------------------------------------------------------------------------------

    @property
    def query(self) -> QueryEngine:
        """The spatio-temporal query engine over this platform's lake (B1-B8, about a place)."""
        if self._query is None:
            from citybase.query.engine import QueryEngine

            self._query = QueryEngine(self.lake, self.city)
        return self._query

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run SQL over the lake (tables are `lake.<dataset>`); returns an Arrow table."""
        return self.lake.cursor().execute(query, params or []).to_arrow_table()

    def quarantine(self, dataset: str | None = None) -> pa.Table:
        where = " WHERE dataset = ?" if dataset else ""
        return self.sql(
            f"SELECT * FROM lake.citybase_quarantine{where} ORDER BY quarantined_at, source, line",
            [dataset] if dataset else [],
        )
