"""Merges write one run sorted by H3 cell per partition, so place queries read fewer row groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from citybase import CityBase
from citybase.store import lake as lake_module

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


def file_sizes(cb: CityBase) -> dict[str, int]:
    t = cb.sql("SELECT data_file, data_file_size_bytes AS size FROM ducklake_list_files('lake', 'pings')")
    return dict(zip(t.column("data_file").to_pylist(), t.column("size").to_pylist(), strict=True))


def test_a_merge_rewrites_files_only_with_files_of_their_size_band(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steady ingest must not rewrite a partition's large file for each few new rows (ADR 0011)."""
    rng = np.random.default_rng(11)
    n = 30_000
    x, y = rng.uniform(116.2, 116.6, n), rng.uniform(39.8, 40.1, n)
    rows = [
        {"id": f"p{i}", "ts": f"2026-01-{1 + i % 28:02d} 08:00:00", "x": float(x[i]), "y": float(y[i])}
        for i in range(n)
    ]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(POINTS)
        cb.ingest("pings", rows[:20_000])
        cb.flush()
        [(big, big_size)] = file_sizes(cb).items()
        # Bands scaled to this file: it is past the last, so final; a 4,000-row flush falls in
        # the middle band, a 100-row one in the first.
        monkeypatch.setattr(lake_module, "MERGE_BANDS", (big_size // 20, big_size))
        for part in (
            rows[20_000:24_000],
            rows[24_000:28_000],
            *(rows[i : i + 100] for i in range(28_000, n, 100)),
        ):
            cb.ingest("pings", part)
            cb.flush()
        sizes = file_sizes(cb)
        assert len(sizes) == 23 and sum(big_size // 20 <= s < big_size for s in sizes.values()) == 2
        cb.maintain()
        after = file_sizes(cb)
        # The large file is untouched. The 20 small files became one, which then fell in the
        # middle band and was merged there with the 2 middle files: one file beside the large one.
        assert after[big] == big_size
        assert len(after) == 2 and all(s < big_size for f, s in after.items() if f != big)
        box = (116.3, 39.9, 116.4, 40.0)
        got = sorted(cb.query.bbox("pings", box).column("id").to_pylist())
        want = sorted(r["id"] for r in rows if box[0] <= r["x"] <= box[2] and box[1] <= r["y"] <= box[3])
        assert got == want and len(want) > 1000
