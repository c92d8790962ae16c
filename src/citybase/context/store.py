"""The current state of the city's context entities, in the metadata database.

One row per (tenant, entity): the stored form as JSON, its types in a side table (indexed, for
`type=` queries) and the bounding box of its `location` (indexed, so a geo-query reads only the
entities near its area before Shapely decides). A GET is one primary-key read.

Writes are funnelled through one writer thread that commits whatever has accumulated in one
transaction (group commit): with `synchronous=FULL` an fsync costs milliseconds, so one per write
would cap updates near 100/s, while one per batch serves thousands. A write is visible to reads at
once (reads look at the not-yet-committed overlay first) and acknowledged to the client only after
its batch is on disk (`await committed()`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

from sqlalchemy import Column, Engine, Float, Index, String, Table, Text, and_, select

from citybase.context.model import LOCATION, Entity
from citybase.meta import METADATA, ensure

log = logging.getLogger("citybase.context.store")

entities_table = Table(
    "ngsi_entities",
    METADATA,
    Column("tenant", String(128), primary_key=True),
    Column("id", String(512), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("minx", Float),
    Column("miny", Float),
    Column("maxx", Float),
    Column("maxy", Float),
    Index("ngsi_entities_bbox", "tenant", "minx", "maxx", "miny", "maxy"),
)
types_table = Table(
    "ngsi_entity_types",
    METADATA,
    Column("tenant", String(128), primary_key=True),
    Column("type", String(512), primary_key=True),
    Column("entity_id", String(512), primary_key=True),
)
tenants_table = Table(
    "ngsi_tenants",
    METADATA,
    Column("name", String(128), primary_key=True),
)

Key = tuple[str, str]
_DELETED = None


def _bbox(entity: Entity) -> tuple[float | None, ...]:
    from citybase.context.geo import to_shape

    for inst in entity.get("attrs", {}).get(LOCATION, []):
        try:
            return tuple(to_shape(inst["value"]).bounds)
        except Exception:
            continue
    return (None, None, None, None)


class EntityStore:
    """Entities by tenant and id, with a write-behind overlay committed in groups."""

    def __init__(self, engine: Engine, *, cache_size: int = 100_000) -> None:
        self.engine = engine
        ensure(engine, entities_table, types_table, tenants_table)
        self.write_lock = threading.RLock()
        self._local = threading.local()
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._get_sql = f"SELECT doc FROM ngsi_entities WHERE tenant = {mark} AND id = {mark}"
        self._tenants: set[str] = set()
        with engine.connect() as c:
            self._tenants.update(r[0] for r in c.execute(select(tenants_table.c.name)))
        self._pending: dict[Key, Entity | None] = {}
        # The types this store last committed per entity (written by the writer thread only):
        # an entity not in it gets its type rows rewritten, which is always correct.
        self._committed_types: dict[Key, tuple[str, ...]] = {}
        self._inflight: dict[Key, Entity | None] = {}
        # Entity JSON by key, most recently used last: this process is the only writer of these
        # tables (one owner, HOUSE_STYLE 5), so a hit needs no I/O and no GIL hand-over.
        self._cache: OrderedDict[Key, str | None] = OrderedDict()
        self.cache_size = cache_size
        self._waiters: list[Callable[[], None]] = []
        self._cv = threading.Condition()
        self._stop = False
        self._writer = threading.Thread(target=self._run, name="ngsi-store-writer", daemon=True)
        self._writer.start()

    # -- tenants ------------------------------------------------------------------------------

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    def tenants(self) -> list[str]:
        return sorted(self._tenants)

    # -- reads --------------------------------------------------------------------------------

    def _overlay(self, key: Key) -> tuple[bool, Entity | None]:
        for layer in (self._pending, self._inflight):
            if key in layer:
                return True, layer[key]
        return False, None

    def get(self, tenant: str, entity_id: str) -> Entity | None:
        """One primary-key read on a connection kept per thread (the hot path of GET)."""
        key = (tenant, entity_id)
        hit, ent = self._overlay(key)
        if hit:
            return json.loads(json.dumps(ent)) if ent is not None else None
        text = self._cache.get(key, "")
        if text != "":
            return json.loads(text) if text is not None else None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.engine.raw_connection()
        cur = conn.cursor()
        try:
            cur.execute(self._get_sql, (tenant, entity_id))
            row = cur.fetchone()
        finally:
            cur.close()
        conn.commit()  # end the read transaction so the next read sees new commits (WAL)
        with self._cv:
            if key not in self._pending and key not in self._inflight:
                self._remember(key, row[0] if row is not None else None)
        return json.loads(row[0]) if row is not None else None

    def _remember(self, key: Key, text: str | None) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = text
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def get_many(self, tenant: str, ids: Iterable[str]) -> dict[str, Entity]:
        out: dict[str, Entity] = {}
        for eid in dict.fromkeys(ids):
            ent = self.get(tenant, eid)
            if ent is not None:
                out[eid] = ent
        return out

    def scan(
        self,
        tenant: str,
        *,
        types: list[str] | None = None,
        ids: list[str] | None = None,
        bbox: tuple[float, float, float, float] | None = None,
    ) -> Iterator[Entity]:
        """Candidate entities by type, id and location box, in id order; callers filter further."""
        e = entities_table
        q = select(e.c.id, e.c.doc).where(e.c.tenant == tenant)
        if types is not None:
            sub = select(types_table.c.entity_id).where(
                types_table.c.tenant == tenant, types_table.c.type.in_(types)
            )
            q = q.where(e.c.id.in_(sub))
        if ids is not None:
            q = q.where(e.c.id.in_(ids))
        if bbox is not None:
            minx, miny, maxx, maxy = bbox
            q = q.where(and_(e.c.maxx >= minx, e.c.minx <= maxx, e.c.maxy >= miny, e.c.miny <= maxy))
        with self.engine.connect() as c:
            rows = {eid: doc for eid, doc in c.execute(q)}
        found: dict[str, Entity | None] = {eid: None for eid in rows}
        for layer in (self._inflight, self._pending):
            for (t, eid), ent in list(layer.items()):
                if t != tenant:
                    continue
                if ent is None:
                    found.pop(eid, None)
                    rows.pop(eid, None)
                elif (types is None or any(x in ent["type"] for x in types)) and (ids is None or eid in ids):
                    found[eid] = ent
                    rows.pop(eid, None)
                else:
                    found.pop(eid, None)
                    rows.pop(eid, None)
        for eid in sorted(found):
            ent = found[eid]
            if ent is None:
                yield json.loads(rows[eid])
            else:
                yield json.loads(json.dumps(ent))

    # -- writes (write-behind, group commit) --------------------------------------------------

    def _stage(self, tenant: str, eid: str, entity: Entity | None) -> None:
        with self._cv:
            self._pending[(tenant, eid)] = entity
            self._cache.pop((tenant, eid), None)  # refilled from the overlay's JSON at commit
            self._cv.notify()

    def insert(self, tenant: str, entity: Entity) -> bool:
        """Add a new entity; False when the id is taken."""
        with self.write_lock:
            if self.get(tenant, entity["id"]) is not None:
                return False
            self._stage(tenant, entity["id"], entity)
        return True

    def put(self, tenant: str, entity: Entity) -> None:
        """Store an entity's new state (insert or replace)."""
        self._stage(tenant, entity["id"], entity)

    def put_many(self, tenant: str, entities: list[Entity]) -> None:
        for ent in entities:
            self._stage(tenant, ent["id"], ent)

    def remove(self, tenant: str, ids: list[str]) -> int:
        n = 0
        for eid in ids:
            if self.get(tenant, eid) is not None:
                n += 1
            self._stage(tenant, eid, _DELETED)
        return n

    async def committed(self) -> None:
        """Wait (without blocking the event loop) until every write staged so far is on disk."""
        if not self._pending and not self._inflight:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        def done() -> None:
            loop.call_soon_threadsafe(resolve)

        with self._cv:
            self._waiters.append(done)
            self._cv.notify()
        await fut

    def sync(self) -> None:
        """Block until every write staged so far is on disk (for callers outside an event loop)."""
        ev = threading.Event()
        with self._cv:
            if not self._pending and not self._inflight:
                return
            self._waiters.append(ev.set)
            self._cv.notify()
        ev.wait(timeout=60)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._waiters and not self._stop:
                    self._cv.wait()
                if self._stop and not self._pending and not self._waiters:
                    return
                batch, self._pending = self._pending, {}
                self._inflight = batch
                waiters, self._waiters = self._waiters, []
            try:
                if batch:
                    self._commit(batch)
            except Exception:
                log.exception("entity batch of %d could not be committed; retrying", len(batch))
                with self._cv:
                    for k, v in batch.items():
                        self._pending.setdefault(k, v)
                    self._waiters.extend(waiters)
                    self._inflight = {}
                threading.Event().wait(0.5)
                continue
            with self._cv:
                self._inflight = {}
            for w in waiters:
                w()

    def _commit(self, batch: dict[Key, Entity | None]) -> None:
        """One transaction for the whole batch, with executemany on the raw connection (the
        ORM-free path costs a few microseconds per row instead of a few hundred)."""
        m = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        upserts = [(k, e) for k, e in batch.items() if e is not None]
        rows = []
        texts: dict[Key, str | None] = {k: None for k, e in batch.items() if e is None}
        for (tenant, eid), ent in upserts:
            minx, miny, maxx, maxy = _bbox(ent)  # type: ignore[arg-type]
            rows.append((tenant, eid, json.dumps(ent, separators=(",", ":")), minx, miny, maxx, maxy))
            texts[(tenant, eid)] = rows[-1][2]
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            new = sorted({t for t, _ in batch} - self._tenants)
            if new:
                cur.executemany(f"INSERT INTO ngsi_tenants (name) VALUES ({m})", [(t,) for t in new])
            gone = [k for k, e in batch.items() if e is None]
            if gone:
                cur.executemany(f"DELETE FROM ngsi_entity_types WHERE tenant = {m} AND entity_id = {m}", gone)
                cur.executemany(f"DELETE FROM ngsi_entities WHERE tenant = {m} AND id = {m}", gone)
            if rows:
                # An upsert (SQLite and PostgreSQL spell it alike): one statement per entity,
                # where a delete and an insert were two.
                cur.executemany(
                    "INSERT INTO ngsi_entities (tenant, id, doc, minx, miny, maxx, maxy) "
                    f"VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT (tenant, id) DO UPDATE SET "
                    "doc = excluded.doc, minx = excluded.minx, miny = excluded.miny, "
                    "maxx = excluded.maxx, maxy = excluded.maxy",
                    rows,
                )
                # Types change rarely: rewrite them only for entities whose types differ from
                # what was last committed.
                changed = [(k, e) for k, e in upserts if self._committed_types.get(k) != tuple(e["type"])]
                if changed:
                    cur.executemany(
                        f"DELETE FROM ngsi_entity_types WHERE tenant = {m} AND entity_id = {m}",
                        [k for k, _ in changed],
                    )
                    cur.executemany(
                        f"INSERT INTO ngsi_entity_types (tenant, type, entity_id) VALUES ({m}, {m}, {m})",
                        [(t, typ, eid) for (t, eid), ent in changed for typ in ent["type"]],
                    )  # type: ignore[index]
            cur.close()
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            conn.close()
        self._tenants.update(t for t, _ in batch)
        if len(self._committed_types) > 4 * max(self.cache_size, 1000):
            self._committed_types.clear()  # bounded memory; a miss only rewrites type rows
        for k, e in batch.items():
            if e is None:
                self._committed_types.pop(k, None)
            else:
                self._committed_types[k] = tuple(e["type"])
        with self._cv:
            for k, text in texts.items():
                if k not in self._pending:
                    self._remember(k, text)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._writer.join(timeout=30)

    def types(self, tenant: str) -> dict[str, list[str]]:
        """Entity ids by expanded type."""
        out: dict[str, list[str]] = {}
        for e in self.scan(tenant):
            for t in e["type"]:
                out.setdefault(t, []).append(e["id"])
        return out

    def purge(self, tenant: str, types: list[str] | None, ids: list[str] | None) -> list[str]:
        found = [e["id"] for e in self.scan(tenant, types=types, ids=ids)]
        if found:
            self.remove(tenant, found)
        return found


__all__ = ["EntityStore", "entities_table", "types_table"]
