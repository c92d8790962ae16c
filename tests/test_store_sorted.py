"""Merges write one run sorted by H3 cell per partition, so place queries read fewer row groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from citybase import CityBase

POINTS = {
    "name": "pings",
    "department": "transport",
    "system": "gps",
    "kind": "points",
    "fields": [
        {"name": "id"},
        {"name": "ts", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
    ],
    "time_field": "ts",
    "geometry": {"lon": "x", "lat": "y"},
    "partition": "month",
    "key": ["id"],
}


def test_a_merge_sorts_the_partition_by_cell_and_keeps_every_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x, y = rng.uniform(116.2, 116.6, 4000), rng.uniform(39.8, 40.1, 4000)
    rows = [
        {"id": f"p{i}", "ts": f"2026-01-{1 + i % 28:02d} 08:00:00", "x": float(x[i]), "y": float(y[i])}
        for i in range(4000)
    ]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(POINTS)
        for part in range(4):  # four flushes: four runs, each over the whole area
            cb.ingest("pings", rows[part::4])
            cb.flush()
        assert len(cb.lake.data_files("pings")) == 4
        cb.maintain()
        files = [f for f, _ in cb.lake.data_files("pings")]
        assert len(files) == 1
        cells = pq.read_table(files[0], columns=["h3"]).column("h3").to_numpy()
        assert len(cells) == 4000 and bool(np.all(np.diff(cells.astype(np.int64)) >= 0))
        # Nothing lost or changed: the box query equals a brute-force filter of what was sent.
        box = (116.3, 39.9, 116.4, 40.0)
        got = sorted(cb.query.bbox("pings", box).column("id").to_pylist())
        want = sorted(r["id"] for r in rows if box[0] <= r["x"] <= box[2] and box[1] <= r["y"] <= box[3])
        assert got == want and len(want) > 100
    # Reopened, the sort order is still declared (and not declared twice).
    with CityBase.open(tmp_path / "base") as cb:
        n = cb.sql(
            "SELECT count(*) AS n FROM __ducklake_metadata_lake.ducklake_sort_info WHERE end_snapshot IS NULL"
        )
        cb.maintain()
        m = cb.sql(
            "SELECT count(*) AS n FROM __ducklake_metadata_lake.ducklake_sort_info WHERE end_snapshot IS NULL"
        )
        assert n.column("n")[0].as_py() == m.column("n")[0].as_py() >= 1
