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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from citybase.deployment import Deployment
from citybase.errors import Conflict
from citybase.gateway.ingest import IngestResult, ingest_rows
from citybase.gateway.load import LoadResult, file_digest, load_file
from citybase.gateway.readers.base import ReadOptions
from citybase.ledger import INGEST, QUARANTINE, Ledger
from citybase.log.append_log import AppendLog
from citybase.log.compact import compact
from citybase.meta import meta_url as default_meta_url
from citybase.meta import open_meta
from citybase.model.city import CitySpec, Level
from citybase.model.dataset import DatasetSpec
from citybase.places.city import City, Layer
from citybase.registry import Registry
from citybase.store.lake import Lake, Location, load_layers, save_layers

if TYPE_CHECKING:
    from citybase.fusion.service import FusionService
    from citybase.query.engine import QueryEngine
    from citybase.share import Sharing


#: Lake files listed per ledger entry (about 200 bytes each, under the 64 KiB entry limit).
FILES_PER_ENTRY = 150


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

    def _record_ingest(self, fact: dict[str, Any], files: list[dict[str, str]]) -> int:
        """An ingest fact with the lake files it wrote; returns the fact's index.

        A ledger entry holds at most 64 KiB: a load into many partitions writes hundreds of files,
        so the list continues in further entries of the same batch (`part` 1, 2, ...), appended
        together with the fact.
        """
        chunks = [files[i : i + FILES_PER_ENTRY] for i in range(0, len(files), FILES_PER_ENTRY)] or [[]]
        entries = [(INGEST, {**fact, "files": chunks[0]})]
        entries += [
            (INGEST, {"batch": fact.get("batch"), "part": n, "rows": 0, "files": chunk})
            for n, chunk in enumerate(chunks[1:], start=1)
        ]
        return self.ledger.append_many(entries)[0]

    def _lake_files(self, since: int) -> list[dict[str, str]]:
        root = Path(self.lake.location.data_path)
        return [
            {"table": table, "path": rel, "sha256": file_digest(root / rel)}
            for table, rel in self.lake.files_since(since)
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
        self.ledger  # noqa: B018 - fail before loading, not after, if another process holds the ledger
        before = self.lake.snapshot()
        res = load_file(
            self.lake, self.city, dataset, path, format=format, options=options, progress=progress
        )
        if not res.skipped:
            fact = {
                "dataset": dataset,
                "batch": res.batch,
                "digest": res.digest,
                "source": str(path),
                "rows": res.added,
                "quarantined": res.quarantined,
                "duplicates": res.duplicates,
            }
            res.ledger_index = self._record_ingest(fact, self._lake_files(before))
            if res.quarantined:
                self.record(
                    QUARANTINE,
                    {
                        "dataset": dataset,
                        "batch": res.batch,
                        "rows": res.quarantined,
                        "reasons": dict(res.reasons.most_common(50)),  # (the entry stays small)
                    },
                )
        return res

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
            before = self.lake.snapshot()
            applied = compact(self.log, self.lake, lambda: self.city)
            if applied:
                fact = {"batch": f"compaction-{self.lake.watermark(self.log.id)}", "rows": 0}
                self._record_ingest(fact, self._lake_files(before))
            return applied

    def maintain(self) -> int:
        """Merge the lake's small files (listed in the ledger like any other); returns files merged.

        Flushes go on meanwhile: the lake commits one table's merge at a time.
        """
        before = self.lake.snapshot()
        merged = self.lake.merge_small_files()
        if merged:
            self._record_ingest({"batch": f"merge-{before}", "rows": 0}, self._lake_files(before))
        return merged

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
