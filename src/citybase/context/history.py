"""Attribute history in the lake: every change of an entity's attributes becomes one row of the
declared `ngsi_ld_history` dataset, ingested through the platform like any other data, so the
temporal API and the spatio-temporal query engine read the same table.

Rows are funnelled through one writer thread that ingests small batches (group commit): an update
pays for a queue put, not for an fsync. Reads first drain the queue and flush the log into the lake.
Deletions and instance edits of the temporal API are tombstones and overrides in the metadata DB,
because lake rows are immutable.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import Column, Engine, Float, Index, Integer, String, Table, Text, delete, insert, select

from citybase.context.broker import Change
from citybase.context.model import ATTR_CORE, CONTENT, Entity, Instance, parse_time
from citybase.meta import METADATA, ensure

log = logging.getLogger("citybase.context.history")
DATASET = "ngsi_ld_history"
SPEC: dict[str, Any] = {
    "name": DATASET,
    "title": "NGSI-LD attribute history",
    "description": "Every change of a context entity's attribute (the NGSI-LD temporal API reads it).",
    "department": "platform",
    "system": "ngsi-ld",
    "kind": "series",
    "time_field": "at",
    "object_field": "entity_id",
    "partition": "month",
    "fields": [
        {"name": "tenant", "type": "string"},
        {"name": "entity_id", "type": "string"},
        {"name": "entity_type", "type": "string", "description": "JSON array of expanded types"},
        {"name": "attr", "type": "string", "description": "expanded attribute name"},
        {"name": "attr_type", "type": "string"},
        {"name": "dataset_id", "type": "string"},
        {"name": "instance_id", "type": "string"},
        {"name": "value_num", "type": "float"},
        {"name": "instance", "type": "string", "description": "the attribute instance as JSON"},
        {"name": "at", "type": "timestamp", "description": "observedAt, else modifiedAt"},
        {"name": "observed_at", "type": "timestamp"},
        {"name": "modified_at", "type": "timestamp"},
        {"name": "deleted_at", "type": "timestamp"},
        {"name": "seq", "type": "int"},
    ],
}
_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("entity_id", pa.string()),
        ("entity_type", pa.string()),
        ("attr", pa.string()),
        ("attr_type", pa.string()),
        ("dataset_id", pa.string()),
        ("instance_id", pa.string()),
        ("value_num", pa.float64()),
        ("instance", pa.string()),
        ("at", pa.timestamp("us", "UTC")),
        ("observed_at", pa.timestamp("us", "UTC")),
        ("modified_at", pa.timestamp("us", "UTC")),
        ("deleted_at", pa.timestamp("us", "UTC")),
        ("seq", pa.int64()),
    ]
)

tombstones = Table(
    "ngsi_history_tombstones",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("entity_id", String(512), nullable=False),
    Column("attr", String(512)),  # null: the whole entity
    Column("dataset_id", String(512)),  # "*": all instances of attr
    Column("instance_id", String(512)),
    Column("seq", Integer, nullable=False),
    Index("ngsi_history_tombstones_entity", "tenant", "entity_id"),
)
overrides = Table(
    "ngsi_history_overrides",
    METADATA,
    Column("tenant", String(128), primary_key=True),
    Column("instance_id", String(512), primary_key=True),
    Column("instance", Text, nullable=False),
    Column("at", Float),
)


class History:
    """Appends attribute instances to the lake and reads them back for the temporal API."""

    def __init__(self, platform: Any, engine: Engine, *, interval: float = 0.5) -> None:
        self.platform = platform
        self.engine = engine
        ensure(engine, tombstones, overrides)
        if DATASET not in platform.datasets:
            platform.declare(SPEC)
        self._queue: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._interval = interval
        self._seq = time.time_ns() // 1000
        self._seq_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ngsi-history", daemon=True)
        self._thread.start()

    def next_seq(self) -> int:
        with self._seq_lock:
            self._seq = max(self._seq + 1, time.time_ns() // 1000)
            return self._seq

    # -- writes -------------------------------------------------------------------------------

    def record(self, changes: list[Change]) -> None:
        """Listener of the broker: the instances each change wrote become history rows."""
        rows: list[dict[str, Any]] = []
        for ch in changes:
            after = ch.after
            if after is None:
                continue
            for attr in ch.attrs:
                for inst in after["attrs"].get(attr, []):
                    if inst.get("modifiedAt") == after.get("modifiedAt") or ch.before is None:
                        rows.append(self.row(ch.tenant, after, attr, inst))
            from citybase.context.subscriptions import deleted_instances

            for attr, gone in deleted_instances(ch).items():
                for old in gone:
                    atype = old.get("type", "Property")
                    key = CONTENT.get(atype, "value")
                    when = after.get("modifiedAt") or old.get("modifiedAt")
                    null: Any = {"@none": "urn:ngsi-ld:null"} if key == "languageMap" else "urn:ngsi-ld:null"
                    marker = {
                        "type": atype,
                        key: null,
                        "createdAt": old.get("createdAt"),
                        "modifiedAt": when,
                        "deletedAt": when,
                    }
                    if "datasetId" in old:
                        marker["datasetId"] = old["datasetId"]
                    rows.append(self.row(ch.tenant, after, attr, marker))
        self.append(rows)

    def row(self, tenant: str, entity: Entity, attr: str, inst: Instance) -> dict[str, Any]:
        """One history row for an attribute instance of an entity."""
        inst = dict(inst)
        seq = self.next_seq()
        inst.setdefault("instanceId", f"urn:ngsi-ld:attribute:instance:{seq:x}")
        modified = parse_time(inst["modifiedAt"], "modifiedAt") if "modifiedAt" in inst else None
        observed = parse_time(inst["observedAt"], "observedAt") if "observedAt" in inst else None
        value = inst.get("value")
        num = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        return {
            "tenant": tenant,
            "entity_id": entity["id"],
            "entity_type": json.dumps(entity["type"]),
            "attr": attr,
            "attr_type": inst.get("type", "Property"),
            "dataset_id": inst.get("datasetId") or "",
            "instance_id": inst["instanceId"],
            "value_num": num,
            "instance": json.dumps(inst, separators=(",", ":")),
            "at": observed or modified,
            "observed_at": observed,
            "modified_at": modified,
            "deleted_at": parse_time(inst["deletedAt"], "deletedAt") if "deletedAt" in inst else None,
            "seq": seq,
        }

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._cv:
            self._pending += 1
        self._queue.put(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            time.sleep(self._interval)
            self._drain()
        self._drain()

    def _drain(self) -> None:
        batches: list[list[dict[str, Any]]] = []
        while True:
            try:
                batches.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batches:
            return
        rows = [r for b in batches for r in b]
        try:
            table = pa.Table.from_pylist(rows, schema=_SCHEMA)
            self.platform.ingest(DATASET, table, source="ngsi-ld")
        except Exception:
            log.exception("history rows could not be ingested (%d rows)", len(rows))
        finally:
            with self._cv:
                self._pending -= len(batches)
                self._cv.notify_all()

    def sync(self) -> None:
        """Make every recorded row visible to reads (drain the writer, flush the log)."""
        with self._cv:
            self._cv.wait_for(lambda: self._pending <= 0, timeout=30)
        self.platform.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    # -- deletions and edits ------------------------------------------------------------------

    def tombstone(
        self,
        tenant: str,
        entity_id: str,
        attr: str | None = None,
        dataset_id: str | None = None,
        instance_id: str | None = None,
    ) -> None:
        with self.engine.begin() as c:
            c.execute(
                insert(tombstones),
                {
                    "tenant": tenant,
                    "entity_id": entity_id,
                    "attr": attr,
                    "dataset_id": dataset_id,
                    "instance_id": instance_id,
                    "seq": self.next_seq(),
                },
            )

    def override(self, tenant: str, instance_id: str, inst: Instance) -> None:
        with self.engine.begin() as c:
            c.execute(
                delete(overrides).where(overrides.c.tenant == tenant, overrides.c.instance_id == instance_id)
            )
            c.execute(
                insert(overrides),
                {
                    "tenant": tenant,
                    "instance_id": instance_id,
                    "instance": json.dumps(inst),
                    "at": time.time(),
                },
            )

    # -- reads --------------------------------------------------------------------------------

    def rows(
        self,
        tenant: str,
        *,
        entity_ids: Iterable[str] | None = None,
        attrs: Iterable[str] | None = None,
        time_column: str = "at",
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """History rows (visible: not tombstoned; edited ones with their edits), oldest first."""
        self.sync()
        where = ["tenant = ?"]
        params: list[Any] = [tenant]
        if entity_ids is not None:
            ids = list(entity_ids)
            if not ids:
                return []
            where.append(f"entity_id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if attrs is not None:
            names = list(attrs)
            if not names:
                return []
            where.append(f"attr IN ({','.join('?' * len(names))})")
            params.extend(names)
        col = {
            "observedAt": "coalesce(observed_at, modified_at)",
            "modifiedAt": "modified_at",
            "createdAt": "modified_at",
            "deletedAt": "deleted_at",
        }.get(time_column, '"at"')
        if time_column == "deletedAt":
            where.append("deleted_at IS NOT NULL")
        else:
            where.append("deleted_at IS NULL")
        if after is not None:
            where.append(f"{col} >= ?")
            params.append(after.replace(tzinfo=None))
        if before is not None:
            where.append(f"{col} < ?")
            params.append(before.replace(tzinfo=None))
        sql = (
            f"SELECT entity_id, entity_type, attr, dataset_id, instance_id, instance, seq, {col} AS t "
            f"FROM lake.{DATASET} WHERE {' AND '.join(where)} ORDER BY {col}, seq"
        )
        if DATASET not in self.platform.datasets:
            return []
        table = self.platform.sql(sql, params)
        out = table.to_pylist()
        for r in out:  # the default instance's "" comes back from the lake as null
            r["dataset_id"] = r["dataset_id"] or ""
        return self._visible(tenant, out)

    def _visible(self, tenant: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return rows
        ids = sorted({r["entity_id"] for r in rows})
        with self.engine.connect() as c:
            stones = c.execute(
                select(tombstones).where(tombstones.c.tenant == tenant, tombstones.c.entity_id.in_(ids))
            ).fetchall()
            edits = {
                r.instance_id: json.loads(r.instance)
                for r in c.execute(select(overrides).where(overrides.c.tenant == tenant))
            }
        by_entity: dict[str, list[Any]] = {}
        for s in stones:
            by_entity.setdefault(s.entity_id, []).append(s)
        out = []
        for r in rows:
            hidden = False
            for s in by_entity.get(r["entity_id"], []):
                if r["seq"] > s.seq:
                    continue
                if s.attr is None:
                    hidden = True
                elif s.attr == r["attr"]:
                    if s.instance_id is not None:
                        hidden = s.instance_id == r["instance_id"]
                    elif s.dataset_id == "*" or s.dataset_id == r["dataset_id"]:
                        hidden = True
                if hidden:
                    break
            if hidden:
                continue
            inst = edits.get(r["instance_id"]) or json.loads(r["instance"])
            r["instance"] = inst
            out.append(r)
        return out

    def exists(self, tenant: str, entity_id: str) -> bool:
        return bool(self.rows(tenant, entity_ids=[entity_id]))


def strip_system(inst: Instance) -> Instance:
    return {k: v for k, v in inst.items() if k in ATTR_CORE or not k.startswith("@")}
