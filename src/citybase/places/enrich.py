"""The enrichment step: conformed rows in, rows in the stored layout (place keys added) out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from citybase.gateway.conform import shadows
from citybase.model.city import DEFAULT_H3_RESOLUTION, Level
from citybase.model.dataset import DatasetSpec
from citybase.model.layout import BATCH, H3, INGESTED_AT, LINE, table_columns
from citybase.places.city import City, h3_cells


def enrich(
    city: City | None, spec: DatasetSpec, rows: pa.Table, batch: str, *, now: datetime | None = None
) -> pa.Table:
    """Add place keys, H3 cell, provenance and the shadow columns of personal fields (masked
    values, gateway/conform.py); return the table in the layout of the dataset's lake table.

    Rows carry lon/lat (or nulls) from the conform step; with no city set up, the admin keys stay
    null and only the H3 cell is filled. `now` is their arrival time (default: this moment).
    """
    n = rows.num_rows
    cols: dict[str, pa.Array] = {c: rows.column(c).combine_chunks() for c in rows.column_names}
    if "lon" in cols:
        lon = cols["lon"].to_numpy(zero_copy_only=False).astype(np.float64)
        lat = cols["lat"].to_numpy(zero_copy_only=False).astype(np.float64)
        if city is not None:
            cols.update(city.keys(lon, lat))
        else:
            cols[H3] = h3_cells(lon, lat, DEFAULT_H3_RESOLUTION)
    cols[BATCH] = pa.repeat(pa.scalar(batch, pa.string()), n)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    cols[INGESTED_AT] = pa.repeat(pa.scalar(now, pa.timestamp("us")), n)
    if LINE not in cols:
        cols[LINE] = pa.nulls(n, pa.int64())
    cols.update(shadows(spec, cols))  # from the values as stored, whatever the rows brought along
    out = {}
    for name, typ, _ in table_columns(spec):
        arr = cols.get(name)
        out[name] = pa.nulls(n, typ) if arr is None else arr.cast(typ)
    return pa.table(out)


def same_in_every_row(city: City | None, batch: str, now: datetime) -> dict[str, Any]:
    """The columns `enrich(city, spec, rows, batch, now=now)` fills with one value in every row:
    provenance, and the place keys of the levels the city has no layer for (null). The lake adds
    them after its sort instead of sorting them (Lake.insert_rows): a third of a load's write."""
    out: dict[str, Any] = {BATCH: batch, INGESTED_AT: now}
    for level in Level:
        layer = city.layers.get(level) if city is not None else None
        if layer is None or not len(layer):
            out[level.value] = None
    return out
