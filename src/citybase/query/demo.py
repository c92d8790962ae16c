"""A tiny city for the query box's examples: two districts, a few GPS pings, air readings.

`demo_engine()` builds it once per process in a temporary folder (removed at exit), so every
docstring example runs as written.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import shapely

from citybase.model.city import Level
from citybase.places.city import City, Layer

PINGS: dict[str, Any] = {
    "name": "pings",
    "department": "transport",
    "system": "fleet",
    "kind": "tracks",
    "time_field": "t",
    "object_field": "vehicle",
    "partition": "day",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "vehicle", "type": "string"},
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        {"name": "speed", "type": "float"},
    ],
}

AIR: dict[str, Any] = {
    "name": "air",
    "department": "ecology",
    "system": "aq",
    "kind": "series",
    "time_field": "t",
    "object_field": "station",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "station", "type": "string"},
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        {"name": "pm25", "type": "float"},
    ],
}


def demo_city() -> City:
    """Districts A (west) and B (east) of a toy Beijing, side by side."""
    geoms = np.array([shapely.box(116.25, 39.85, 116.35, 40.0), shapely.box(116.35, 39.85, 116.45, 40.0)])
    layer = Layer(
        Level.district,
        np.array(["A", "B"], dtype=object),
        np.array(["West", "East"], dtype=object),
        np.array([None, None], dtype=object),
        geoms,
    )
    return City("demo", "UTC", 12, {Level.district: layer})


def demo_rows() -> dict[str, list[dict[str, Any]]]:
    t0 = datetime(2024, 5, 1, 8, 0)
    pings = []
    # Vehicle a drives east along 39.92, then waits ten minutes at one place (a stay).
    for i in range(8):
        pings.append(
            {"vehicle": "a", "t": t0 + timedelta(seconds=30 * i), "x": 116.31 + 0.01 * i, "y": 39.92}
        )
    for i in range(1, 11):
        pings.append(
            {"vehicle": "a", "t": t0 + timedelta(seconds=210 + 60 * i), "x": 116.38 + 0.00001 * i, "y": 39.92}
        )
    # Vehicle b drives north in district B.
    for i in range(6):
        pings.append(
            {"vehicle": "b", "t": t0 + timedelta(seconds=60 * i), "x": 116.42, "y": 39.95 + 0.005 * i}
        )
    for p in pings:
        p["speed"] = 10.0
    air = [
        {"station": s, "t": t0 + timedelta(hours=h), "x": x, "y": 39.93, "pm25": 30.0 + 10 * h + k}
        for k, (s, x) in enumerate([("west", 116.30), ("east", 116.40)])
        for h in range(3)
    ]
    return {"pings": pings, "air": air}


@cache
def demo_engine() -> Any:
    """The demo city's query engine (a `QueryEngine`), built once per process.

    >>> sorted(demo_engine().lake.stats().items())
    [('air', 6), ('pings', 24)]
    """
    from citybase.platform import CityBase

    root = tempfile.mkdtemp(prefix="citybase-demo-")
    cb = CityBase(root)
    cb.setup_city(demo_city())
    cb.declare(PINGS)
    cb.declare(AIR)
    for name, rows in demo_rows().items():
        cb.ingest(name, rows)
    cb.flush()

    def _cleanup() -> None:
        cb.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(_cleanup)
    from citybase.query.engine import QueryEngine

    return QueryEngine(cb.lake, cb.city)
