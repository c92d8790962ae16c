"""`cb.fusion`: the platform's own entity store, fed from declared lake datasets.

- `declare(...)` says which datasets feed which entity type (declaration.py);
- `resolve(entity_type)` runs a full resolution over the lake (training included);
- `update()` joins the rows that landed since, with `resolve_incremental`: new records join the
  entities they match, every existing id stays. The server's maintainer thread calls it, so the
  ingest path never waits for entity resolution;
- `entities(who, ...)` and `entity(who, id)` answer through the reader's grants (viewer.py).

Readers use an in-memory snapshot of the result tables, swapped after each run, so a read never
meets a half-written table and never waits for a run.

>>> import tempfile
>>> from citybase.platform import CityBase
>>> with CityBase.open(tempfile.mkdtemp()) as cb:
...     cb.fusion.entity_types()
[]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybase.errors import NotFound
from citybase.fusion.declaration import EntityTypeSpec, FusionDeclaration
from citybase.fusion.profile import (
    EntityLink,
    EntityPage,
    EntityProfile,
    EntitySummary,
    GoldenValue,
    Location,
)
from citybase.fusion.store import EntityStore
from citybase.fusion.viewer import (
    DatasetView,
    dataset_views,
    golden_for,
    read_records,
    search,
    visible_members,
)

if TYPE_CHECKING:
    from citybase.fusion.resolve import Resolution
    from citybase.platform import CityBase
    from citybase.registry import Principal

Progress = Callable[[str], None]
DECLARATION = "declaration.yaml"
_EMPTY_LINKS = pa.schema(
    [
        ("uid", pa.string()),
        ("from_entity", pa.string()),
        ("relation", pa.string()),
        ("to_entity", pa.string()),
    ]
).empty_table()


@dataclass(frozen=True)
class Fused:
    """One entity type's results as readers use them (immutable; replaced after each run)."""

    spec: EntityTypeSpec
    members: pa.Table  # uid, entity_id, source
    provenance: pa.Table  # entity_id, field, value, uid, source, ...
    points: pa.Table  # uid, lon, lat: each record's geocoded location
    links: pa.Table  # uid, from_entity, relation, to_entity: record-level links from this type
    stamp: tuple[float, float]  # when members and links were written (seconds since the epoch)

    @property
    def at(self) -> float:
        return self.stamp[0]


class FusionService:
    """The entity store of one platform (ROOT/fusion) and the reads of it through grants."""

    def __init__(self, cb: CityBase, path: str | Path | None = None) -> None:
        self.cb = cb
        self.store = EntityStore(path or Path(cb.root) / "fusion")
        self._run_lock = threading.Lock()  # one resolution at a time
        self._fused: dict[str, Fused] = {}
        self._seen: int | None = None  # the lake snapshot the last update read
        self._declaration: tuple[int, FusionDeclaration] | None = None

    # -- declaration --------------------------------------------------------------------------

    @property
    def declaration(self) -> FusionDeclaration:
        """What is declared (read again when the file changes: a CLI may declare beside a server)."""
        p = self.store.path / DECLARATION
        try:
            stamp = p.stat().st_mtime_ns
        except FileNotFoundError:
            return FusionDeclaration()
        cached = self._declaration
        if cached is None or cached[0] != stamp:
            cached = (stamp, FusionDeclaration.load(p))
            self._declaration = cached
        return cached[1]

    def declare(self, source: FusionDeclaration | str | Path | dict[str, Any]) -> FusionDeclaration:
        """Add (or replace, by entity type) what feeds the entity types; checked against the lake."""
        new = source if isinstance(source, FusionDeclaration) else FusionDeclaration.load(source)
        merged = self.declaration.merged(new)
        for t in merged.types:
            t.check(self.cb.datasets)
        tmp = self.store.path / f".{DECLARATION}.tmp"
        tmp.write_text(merged.to_yaml(), encoding="utf-8")
        tmp.replace(self.store.path / DECLARATION)
        self._seen = None
        return merged

    def entity_types(self) -> list[str]:
        return [t.entity_type for t in self.declaration.types]

    # -- runs ---------------------------------------------------------------------------------

    def resolve(self, entity_type: str, *, progress: Progress | None = None) -> Resolution:
        """Resolve every record of the type's feeds from scratch; ids already given are kept."""
        from citybase.fusion.lake import address_context, feed_records
        from citybase.fusion.resolve import resolve

        decl = self.declaration
        et = decl.type(entity_type)
        with self._run_lock:
            records = feed_records(self.cb, et)
            ctx = address_context(self.cb, decl.addresses)
            res = resolve(records, self._rules(et), addresses=ctx, store=self.store, progress=progress)
            self._after_run(decl, {entity_type})
        return res

    def update(self, *, progress: Progress | None = None) -> dict[str, int]:
        """Join the records that landed since the last run, for every type resolved once already.

        Returns entity type -> records added. Cheap when the lake has not changed.
        """
        from citybase.fusion.lake import address_context, feed_records
        from citybase.fusion.resolve import resolve_incremental

        if not (self.store.path / DECLARATION).is_file():
            return {}
        with self._run_lock:
            snapshot = self.cb.lake.snapshot()
            if snapshot == self._seen:
                return {}
            decl = self.declaration
            added: dict[str, int] = {}
            ctx: Any = None
            # Only rows inserted since the last update, where that is known (and the same types
            # are declared: `declare` forgets it) and still kept (CityBase.maintain forgets old
            # snapshots); else every feed is read, less the records known.
            seen = self._seen
            since = (seen, snapshot) if seen is not None and seen >= self.cb.lake.oldest_snapshot() else None
            for et in decl.types:
                if self.store.model(et.entity_type) is None:
                    continue  # never resolved: a full `resolve` trains its model first
                new = feed_records(self.cb, et, known=self.store.ids(et.entity_type), since=since)
                if new.num_rows == 0:
                    continue
                if ctx is None:
                    ctx = address_context(self.cb, decl.addresses)
                resolve_incremental(new, self._rules(et), self.store, addresses=ctx, progress=progress)
                added[et.entity_type] = new.num_rows
            if added:
                self._after_run(decl, set(added))
            self._seen = snapshot
        return added

    @staticmethod
    def _rules(et: EntityTypeSpec) -> Any:
        return et.rules.model_copy(update={"record_id": "record_id", "source": "source"})

    def _after_run(self, decl: FusionDeclaration, changed: set[str]) -> None:
        """Recompute the links that touch a changed type and swap in fresh snapshots."""
        touched = set(changed)
        for t in decl.types:
            for link in t.links:
                if t.entity_type in changed or link.to in changed:
                    touched.add(t.entity_type)
                    self._save_links(decl, t)
        fresh = dict(self._fused)
        for name in touched:
            fresh.pop(name, None)
        self._fused = fresh

    def _stored(self, et: str) -> Resolution | None:
        from citybase.fusion.resolve import Resolution

        rec = self.store.records(et)
        if rec is None:
            return None
        empty = pa.table({"uid": pa.array([], pa.string())})
        return Resolution(
            et,
            self.store.table(et, "members"),
            self.store.table(et, "entities"),
            empty,
            empty,
            self.store.table(et, "golden"),
            self.store.table(et, "provenance"),
            rec[0],
            {},
        )

    def _save_links(self, decl: FusionDeclaration, t: EntityTypeSpec) -> None:
        from citybase.fusion.graph import link_records

        source = self._stored(t.entity_type)
        parts = [_EMPTY_LINKS]
        for link in t.links:
            target = self._stored(link.to)
            if source is None or target is None:
                continue
            parts.append(
                link_records(
                    source, link.field, target, relation=link.relation, target_field=link.target_field
                )
            )
        tmp = self.store.path / f".links_{t.entity_type}.parquet.tmp"
        pq.write_table(pa.concat_tables(parts), tmp)
        tmp.replace(self.store.path / f"links_{t.entity_type}.parquet")

    # -- snapshots ----------------------------------------------------------------------------

    def _stamp(self, name: str) -> tuple[float, float]:
        """When the type's members and links were last written (another process may write them:
        `citybase fusion run` beside a server)."""
        out = []
        for p in (
            self.store.path / "entities" / name / "members.parquet",
            self.store.path / f"links_{name}.parquet",
        ):
            try:
                out.append(p.stat().st_mtime)
            except FileNotFoundError:
                out.append(0.0)
        return out[0], out[1]

    def _load(self, et: EntityTypeSpec) -> Fused | None:
        name = et.entity_type
        got = self._fused.get(name)
        if got is not None and got.stamp == self._stamp(name):
            return got
        with self._run_lock:  # not while a run writes the tables
            if name not in self.store.entity_types():
                return None
            stamp = self._stamp(name)
            members = self.store.table(name, "members")  # with `source`: feeds always name it
            prov = self.store.table(name, "provenance")
            points = _points(self.store, et)
            lp = self.store.path / f"links_{name}.parquet"
            links = pq.read_table(lp) if lp.is_file() else _EMPTY_LINKS
            got = Fused(et, members.select(["uid", "entity_id", "source"]), prov, points, links, stamp)
            self._fused = {**self._fused, name: got}
        return got

    def _types(self, entity_type: str | None = None) -> list[tuple[EntityTypeSpec, Fused]]:
        decl = self.declaration
        specs = [decl.type(entity_type)] if entity_type else decl.types
        out = []
        for et in specs:
            f = self._load(et)
            if f is not None:
                out.append((et, f))
        return out

    # -- reads through grants -----------------------------------------------------------------

    def entities(
        self,
        who: Principal,
        entity_type: str | None = None,
        *,
        q: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> EntityPage:
        """Entities the reader may see (through at least one record it may read), in id order.

        `q` matches an entity id, or text in the records as the reader reads them.
        """
        found = self._visible(who, entity_type, q)
        page = found[offset : offset + limit]
        summaries: dict[str, EntitySummary] = {}
        for name in dict.fromkeys(x[1].entity_type for x in page):
            _, et, f, views = next(x for x in page if x[1].entity_type == name)
            ids = [x[0] for x in page if x[1].entity_type == name]
            summaries.update(self._summaries(who, et, f, views, ids))
        items = [summaries[eid] for eid, *_ in page]
        return EntityPage(items=items, total=len(found), limit=limit, offset=offset)

    def visible_ids(self, who: Principal, entity_type: str | None = None) -> list[str]:
        """Ids of the entities the reader may see, in order (for paging elsewhere: NGSI-LD)."""
        return [x[0] for x in self._visible(who, entity_type, None)]

    def _visible(
        self, who: Principal, entity_type: str | None, q: str | None
    ) -> list[tuple[str, EntityTypeSpec, Fused, dict[str, DatasetView]]]:
        found: list[tuple[str, EntityTypeSpec, Fused, dict[str, DatasetView]]] = []
        for et, f in self._types(entity_type):
            views = dataset_views(self.cb, who, et)
            mem = visible_members(f.members, views)
            if q:
                hits = search(self.cb, who, views, et, q) if views else set()
                by_text = pc.is_in(mem["uid"], pa.array(sorted(hits), pa.string()))
                mem = mem.filter(pc.or_(by_text, pc.equal(mem["entity_id"], q)))
            found += [(eid, et, f, views) for eid in pc.unique(mem["entity_id"]).to_pylist()]
        found.sort(key=lambda x: x[0])
        return found

    def _summaries(
        self, who: Principal, et: EntityTypeSpec, f: Fused, views: dict[str, DatasetView], ids: list[str]
    ) -> dict[str, EntitySummary]:
        mem = visible_members(f.members.filter(pc.is_in(f.members["entity_id"], pa.array(ids))), views)
        records = read_records(self.cb, who, views, mem["uid"].to_pylist(), f"entities ({et.entity_type})")
        prov = f.provenance.filter(pc.is_in(f.provenance["entity_id"], pa.array(ids)))
        golden = golden_for(prov, records, views)
        members: dict[str, list[str]] = {}
        for u, e in zip(mem["uid"].to_pylist(), mem["entity_id"].to_pylist(), strict=True):
            if u in records:
                members.setdefault(e, []).append(u)
        out = {}
        for eid in ids:
            mine = members.get(eid, [])
            out[eid] = EntitySummary(
                id=eid,
                type=et.entity_type,
                ngsi_id=ngsi_id(et, eid),
                golden={k: v["value"] for k, v in sorted(golden.get(eid, {}).items())},
                sources=sorted({u.split("|", 1)[0] for u in mine}),
                records=len(mine),
            )
        return out

    def entity(self, who: Principal, entity_id: str) -> EntityProfile:
        """One entity as the reader may see it: golden record with sources, its records, links to
        other entities (both ways) and its place. 404 where the reader can see none of it."""
        eid = self.store.surviving(entity_id)
        for et, f in self._types():
            if pc.any(pc.equal(f.members["entity_id"], eid)).as_py():
                got = self._profiles(who, et, f, [eid])
                if eid in got:
                    return got[eid]
                break
        raise NotFound(f"no entity {entity_id!r}")  # not "forbidden": its existence is not theirs to know

    def profiles(self, who: Principal, entity_type: str, ids: list[str]) -> dict[str, EntityProfile]:
        """Several entities of one type at once (one read per dataset): those the reader may see."""
        et = self.declaration.type(entity_type)
        f = self._load(et)
        return {} if f is None else self._profiles(who, et, f, ids)

    def _profiles(
        self, who: Principal, et: EntityTypeSpec, f: Fused, ids: list[str]
    ) -> dict[str, EntityProfile]:
        wanted = pa.array(ids, pa.string())
        views = dataset_views(self.cb, who, et)
        mem = visible_members(f.members.filter(pc.is_in(f.members["entity_id"], wanted)), views)
        purpose = f"entity {ids[0]}" if len(ids) == 1 else f"entities ({et.entity_type})"
        records = read_records(self.cb, who, views, mem["uid"].to_pylist(), purpose)
        golden = golden_for(f.provenance.filter(pc.is_in(f.provenance["entity_id"], wanted)), records, views)
        incoming = self._links_to(who, et, ids)
        uids: dict[str, list[str]] = {}
        for u, e in zip(mem["uid"].to_pylist(), mem["entity_id"].to_pylist(), strict=True):
            if u in records:
                uids.setdefault(e, []).append(u)
        city = self.cb.city
        out: dict[str, EntityProfile] = {}
        for eid in ids:
            mine = {u: records[u] for u in sorted(uids.get(eid, []))}
            if not mine:
                continue
            loc = _location(et, f, views, mine)
            places: dict[str, str] = {}
            if loc is not None and city is not None:
                keys = city.keys(np.array([loc.lon]), np.array([loc.lat]))
                places = {k: str(v[0].as_py()) for k, v in keys.items() if v[0].as_py() is not None}
            out[eid] = EntityProfile(
                id=eid,
                type=et.entity_type,
                ngsi_id=ngsi_id(et, eid),
                golden={k: GoldenValue(**v) for k, v in sorted(golden.get(eid, {}).items())},
                records=[
                    {"dataset": u.split("|", 1)[0], "record_id": u.split("|", 1)[1], "values": v}
                    for u, v in mine.items()
                ],
                links=self._links_from(et, f, views, mine, eid) + incoming.get(eid, []),
                location=loc,
                places=places,
                resolved_at=f.at,
            )
        return out

    def _links_from(
        self, et: EntityTypeSpec, f: Fused, views: dict[str, DatasetView], records: dict[str, Any], eid: str
    ) -> list[EntityLink]:
        spec_of = {lk.relation: lk for lk in et.links}
        decl = self.declaration
        counts: dict[tuple[str, str], int] = {}
        for row in f.links.filter(pc.is_in(f.links["uid"], pa.array(list(records), pa.string()))).to_pylist():
            lk = spec_of.get(row["relation"])
            if lk is None:
                continue
            ds = row["uid"].split("|", 1)[0]
            if not views[ds].raw(views[ds].column(lk.field)):
                continue  # a masked address must not come back as the building it is in
            key = (row["relation"], row["to_entity"])
            counts[key] = counts.get(key, 0) + 1
        return [
            EntityLink(
                relation=rel,
                direction="out",
                entity=to,
                entity_type=lk.to,
                ngsi_id=ngsi_id(decl.type(lk.to), to),
                records=n,
            )
            for (rel, to), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            for lk in [spec_of[rel]]
        ]

    def _links_to(self, who: Principal, et: EntityTypeSpec, ids: list[str]) -> dict[str, list[EntityLink]]:
        """Entities of other types that link to these, through records the reader reads raw."""
        counts: dict[str, dict[tuple[str, str, str], int]] = {}
        for src_et, f in self._types():
            specs = {lk.relation: lk for lk in src_et.links if lk.to == et.entity_type}
            if not specs:
                continue
            rows = f.links.filter(pc.is_in(f.links["to_entity"], pa.array(ids, pa.string())))
            if rows.num_rows == 0:
                continue
            views = dataset_views(self.cb, who, src_et)
            for row in rows.to_pylist():
                lk = specs.get(row["relation"])
                ds, rid = row["uid"].split("|", 1)
                v = views.get(ds)
                if lk is None or v is None or (v.ids is not None and rid not in v.ids):
                    continue
                if not v.raw(v.column(lk.field)):
                    continue
                key = (row["relation"], row["from_entity"], src_et.entity_type)
                mine = counts.setdefault(row["to_entity"], {})
                mine[key] = mine.get(key, 0) + 1
        decl = self.declaration
        return {
            eid: [
                EntityLink(
                    relation=rel,
                    direction="in",
                    entity=frm,
                    entity_type=typ,
                    ngsi_id=ngsi_id(decl.type(typ), frm),
                    records=n,
                )
                for (rel, frm, typ), n in sorted(c.items())
            ]
            for eid, c in counts.items()
        }

    # -- NGSI-LD ------------------------------------------------------------------------------

    @property
    def ngsi(self) -> Any:
        """The read-only NGSI-LD entity provider over this store (ngsi.py)."""
        from citybase.fusion.ngsi import FusionProvider

        return FusionProvider(self)


def ngsi_id(et: EntityTypeSpec, entity_id: str) -> str:
    """The entity's NGSI-LD id: urn:ngsi-ld:<NGSI type>:<entity id>."""
    return f"urn:ngsi-ld:{et.ngsi}:{entity_id}"


def _points(store: EntityStore, et: EntityTypeSpec) -> pa.Table:
    """uid, lon, lat of each record, from the location field's geocoding (or its geo columns)."""
    field = et.location_field
    rec = store.records(et.entity_type)
    empty = pa.table(
        {
            "uid": pa.array([], pa.string()),
            "lon": pa.array([], pa.float64()),
            "lat": pa.array([], pa.float64()),
        }
    )
    if field is None or rec is None:
        return empty
    prepared = rec[0]
    lon, lat = f"{field}_lon", f"{field}_lat"
    if lon not in prepared.column_names:
        return empty
    t = prepared.select(["uid", lon, lat]).rename_columns(["uid", "lon", "lat"])
    return t.filter(pc.and_(pc.is_valid(t["lon"]), pc.is_valid(t["lat"])))


def _location(
    et: EntityTypeSpec, f: Fused, views: dict[str, DatasetView], records: dict[str, Any]
) -> Location | None:
    """The median of the points of the records whose location columns the reader reads raw."""
    field = et.location_field
    if field is None:
        return None
    rule = et.rules.field(field)
    cols = [c for c in (rule.lon, rule.lat) if c] if rule.kind == "geo" else [field]
    ok = []
    for u in records:
        v = views[u.split("|", 1)[0]]
        ok.append(u if all(v.raw(v.column(c)) for c in cols) else None)
    pts = f.points.filter(pc.is_in(f.points["uid"], pa.array([u for u in ok if u], pa.string())))
    if pts.num_rows == 0:
        return None
    return Location(
        lon=float(np.median(pts["lon"].to_numpy())),
        lat=float(np.median(pts["lat"].to_numpy())),
        records=pts.num_rows,
    )


def resolved_at(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
