"""The digital twin's current state: each device's latest reading, on its place.

The state is derived, not kept: the newest row per device in the lake, overlaid with what the
append log holds and has not yet moved to the lake. So it is right after any restart (nothing to
rebuild or to lose) and it shows an acknowledged reading at once, before the next flush. The log
is read before the lake: a flush in between moves rows into the lake, where the second read finds
them.

>>> import tempfile
>>> from citybase.platform import CityBase
>>> with CityBase.open(tempfile.mkdtemp()) as cb:
...     latest_state(cb).num_rows
0
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from citybase.iot.devices import Device, DeviceRegistry
from citybase.log.append_log import ROWS
from citybase.model.city import DEFAULT_H3_RESOLUTION
from citybase.model.dataset import DatasetSpec
from citybase.model.layout import H3, PLACE_KEYS
from citybase.places.city import h3_cells
from citybase.sqltext import quote

if TYPE_CHECKING:
    import geopandas as gpd

    from citybase.platform import CityBase

#: device id -> (Unix microseconds of its newest reading, that reading's values by field)
Latest = dict[str, tuple[int, dict[str, Any]]]


def _measures(spec: DatasetSpec) -> list[str]:
    skip = {spec.object_field, spec.time_field}
    if spec.geometry is not None:
        skip |= {spec.geometry.lon, spec.geometry.lat}
    return [f.name for f in spec.fields if f.name not in skip]


def _newest(t: pa.Table, spec: DatasetSpec, into: Latest) -> None:
    """Fold a table of readings into `into`, keeping the newest per device."""
    assert spec.object_field and spec.time_field
    if not t.num_rows:
        return
    cols = [c for c in _measures(spec) if c in t.column_names]
    ts = pc.cast(t.column(spec.time_field), pa.int64()).to_pylist()
    devs = t.column(spec.object_field).to_pylist()
    vals = {c: t.column(c).to_pylist() for c in cols}
    for i, (d, s) in enumerate(zip(devs, ts, strict=True)):
        if d is None or s is None:
            continue
        old = into.get(d)
        if old is None or s > old[0]:
            into[d] = (s, {c: vals[c][i] for c in cols})


def latest_readings(cb: CityBase, devices: list[Device]) -> Latest:
    """The newest reading of each of these devices, from the log's pending rows and the lake.

    A read that meets a flush's commit in the SQLite catalog ("database is locked") is retried.
    """
    for attempt in range(6):
        try:
            return _latest_readings(cb, devices)
        except duckdb.Error as e:
            if "locked" not in str(e) or attempt == 5:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _latest_readings(cb: CityBase, devices: list[Device]) -> Latest:
    by_ds: dict[str, set[str]] = defaultdict(set)
    for d in devices:
        if d.dataset in cb.datasets:
            by_ds[d.dataset].add(d.id)
    out: Latest = {}
    if not by_ds:
        return out
    for e in cb.log.entries_after(cb.lake.watermark(cb.log.id)):
        if e.kind == ROWS and e.dataset in by_ds:
            _newest(e.table, cb.lake.spec(e.dataset), out)
    for name, ids in by_ds.items():
        spec = cb.lake.spec(name)
        assert spec.object_field and spec.time_field
        obj, t = quote(spec.object_field), quote(spec.time_field)
        cols = "".join(f", {quote(c)}" for c in _measures(spec))
        got = cb.sql(
            f"SELECT {obj}, {t}{cols} FROM {cb.lake.table(name)} "
            f"WHERE {obj} IN (SELECT unnest(?::VARCHAR[])) "
            f"QUALIFY row_number() OVER (PARTITION BY {obj} ORDER BY {t} DESC) = 1",
            [sorted(ids)],
        )
        _newest(got, spec, out)
    wanted = {d.id for d in devices}
    return {k: v for k, v in out.items() if k in wanted}


def latest_state(cb: CityBase, department: str | None = None) -> pa.Table:
    """One row per device (of a department, or all): its latest reading and its place keys.

    Columns: device, type, department, dataset, ts (UTC; null before its first reading), values
    (JSON object of the reading's fields), lon, lat, the place keys (district ... building) and h3.
    """
    devices = DeviceRegistry(cb.meta).list(department)
    latest = latest_readings(cb, devices)
    lon = np.array([d.lon for d in devices], dtype=np.float64)
    lat = np.array([d.lat for d in devices], dtype=np.float64)
    city = cb.city
    if city is not None:
        keys = city.keys(lon, lat)
    else:
        keys = {k: pa.nulls(len(devices), pa.string()) for k in PLACE_KEYS}
        keys[H3] = h3_cells(lon, lat, DEFAULT_H3_RESOLUTION)
    ts = [latest[d.id][0] if d.id in latest else None for d in devices]
    values = [
        json.dumps(latest[d.id][1], default=_jsonable, ensure_ascii=False) if d.id in latest else None
        for d in devices
    ]
    cols: dict[str, pa.Array] = {
        "device": pa.array([d.id for d in devices], pa.string()),
        "type": pa.array([d.type for d in devices], pa.string()),
        "department": pa.array([d.department for d in devices], pa.string()),
        "dataset": pa.array([d.dataset for d in devices], pa.string()),
        "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us")),
        "values": pa.array(values, pa.string()),
        "lon": pa.array(lon),
        "lat": pa.array(lat),
    }
    cols.update({k: keys[k] for k in (*PLACE_KEYS, H3)})
    return pa.table(cols)


def latest_state_gdf(cb: CityBase, department: str | None = None) -> gpd.GeoDataFrame:
    """`latest_state` as a GeoDataFrame of points (EPSG:4326), for maps and spatial joins."""
    import geopandas as gpd

    df = latest_state(cb, department).to_pandas()
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")


def _jsonable(v: Any) -> str:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    return str(v)
