"""Feeds read from the lake: department rows mapped onto an entity type's one record schema.

The platform reads its own lake here (trusted, unscoped): fusion sees every record, and what a
department may see of the result is decided at read time (viewer.py), through its grants.

A record is the latest row of its record id in the dataset (a register re-sends changed rows);
`source` is the dataset's name, so a record's uid is `<dataset>|<record id>` everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from citybase.fusion.declaration import AddressSpec, EntityTypeSpec, Feed
from citybase.fusion.divisions import Division, Divisions
from citybase.fusion.features import AddressContext
from citybase.fusion.geocode import Reference
from citybase.model.dataset import DatasetSpec
from citybase.sqltext import literal, quote
from citybase.store.engine import arrow_table

if TYPE_CHECKING:
    from citybase.platform import CityBase

SOURCE, RECORD_ID = "source", "record_id"


def stored(spec: DatasetSpec, column: str) -> str | None:
    """The lake column a declared field is stored in (geometry lon/lat fields become lon, lat);
    None when the dataset declares no such field."""
    geo = spec.geometry
    if geo is not None and column == geo.lon:
        return "lon"
    if geo is not None and column == geo.lat:
        return "lat"
    return column if any(f.name == column for f in spec.fields) else None


def _select(cb: CityBase, et: EntityTypeSpec, feed: Feed, rows: str | None = None) -> str:
    """The feed's records (the latest row of each record id) from `rows` (default: its table)."""
    spec = cb.lake.spec(feed.dataset)
    rid = quote(stored(spec, feed.record_id) or feed.record_id)
    cols = [f"CAST({rid} AS VARCHAR) AS {RECORD_ID}", f"{literal(feed.dataset)} AS {SOURCE}"]
    for rule_col, numeric in et.rule_columns():
        col = stored(spec, feed.column(rule_col))
        typ = "DOUBLE" if numeric else "VARCHAR"
        expr = f"CAST(s.{quote(col)} AS {typ})" if col else f"CAST(NULL AS {typ})"
        cols.append(f"{expr} AS {quote(rule_col)}")
    return (
        f"SELECT {', '.join(cols)} FROM {rows or cb.lake.table(feed.dataset)} AS s WHERE s.{rid} IS NOT NULL"
        f" QUALIFY row_number() OVER (PARTITION BY s.{rid}"
        " ORDER BY s._ingested_at DESC, s._batch DESC, s._line DESC) = 1"
    )


def feed_records(
    cb: CityBase,
    et: EntityTypeSpec,
    known: pa.Table | None = None,
    since: tuple[int, int] | None = None,
) -> pa.Table:
    """The type's records from all its feeds, on one schema; with `known` (a `uid` column), only
    the records not among them (the rows that landed since the last run). With `since` (snapshots
    (a, b)), only rows inserted after a up to b are read, not the whole feeds: what changed since
    the last run is all a running server's maintainer needs to look at."""
    parts = []
    cur = cb.lake.cursor()
    try:
        if known is not None:
            cur.register("_fusion_known", known.select(["uid"]))
        for feed in et.feeds:
            rows = None if since is None else cb.lake.inserted(feed.dataset, *since)
            sql = _select(cb, et, feed, rows)
            if known is not None:
                sql = (
                    f"SELECT * FROM ({sql}) AS r WHERE {SOURCE} || '|' || {RECORD_ID}"
                    " NOT IN (SELECT uid FROM _fusion_known)"
                )
            parts.append(arrow_table(cur, sql + f" ORDER BY {RECORD_ID}"))
    finally:
        cur.close()
    return pa.concat_tables(parts)


def address_context(cb: CityBase, spec: AddressSpec | None) -> AddressContext | None:
    """Divisions overlaid with the city model's districts and streets, and the lake's reference."""
    if spec is None:
        return None
    base = Divisions.load(spec.divisions) if spec.divisions is not None else Divisions([])
    own: list[Division] = []
    if spec.province is not None:
        own.append(Division(spec.province.code, spec.province.name, "province"))
    city = cb.city
    if city is not None:
        for level, layer in city.layers.items():
            if level.value not in ("district", "street"):
                continue
            cents = [g.centroid for g in layer.geoms]
            own += [
                Division(str(c), str(n), level.value, float(p.x), float(p.y))  # type: ignore[arg-type]
                for c, n, p in zip(layer.codes, layer.names, cents, strict=True)
            ]
    divisions = base.overlay(own)
    reference = None
    if spec.reference is not None:
        r = spec.reference
        ds = cb.lake.spec(r.dataset)
        cols = [r.address, r.lon, r.lat, r.record_id] + ([r.name] if r.name else [])
        sel = ", ".join(f"{quote(stored(ds, c) or c)} AS {quote(c)}" for c in cols)
        table = cb.sql(f"SELECT {sel} FROM {cb.lake.table(r.dataset)}")
        reference = Reference.build(
            table,
            divisions,
            address=r.address,
            name=r.name,
            lon=r.lon,
            lat=r.lat,
            ref_id=r.record_id,
            default=spec.default,
        )
    return AddressContext(divisions, reference, default=spec.default)
