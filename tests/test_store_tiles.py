"""A dataset partitioned by cell (`partition_cells`): files disjoint in space, pruned per query.

Every query is checked against a brute-force filter of the rows sent, with the files narrowed
to those a query's box and window may need (store/files.py), and through masked and windowed
scopes, where the narrowing must not drop a row the reader would see.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import h3
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from citybase import CityBase
from citybase.errors import DeclarationError
from citybase.query._sql import haversine_np
from citybase.query.scope import ReadScope

SPEC = {
    "name": "pings",
    "department": "transport",
    "system": "gps",
    "kind": "points",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
    ],
    "time_field": "ts",
    "geometry": {"lon": "x", "lat": "y"},
    "partition": "month",
    "partition_cells": 6,
    "key": ["id"],
}
N = 6000
T0 = datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    x, y = rng.uniform(116.2, 116.6, N), rng.uniform(39.8, 40.1, N)
    ts = [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 59, N)]  # two months
    rows = [{"id": i, "ts": ts[i], "x": float(x[i]), "y": float(y[i])} for i in range(N)]
    cb = CityBase.open(tmp_path_factory.mktemp("tiles") / "base")
    cb.declare(SPEC)
    for part in range(3):  # three flushes, each over the whole area
        cb.ingest("pings", rows[part::3])
        cb.flush()
    yield cb, rows
    cb.close()


def _inside(r: dict, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= r["x"] <= box[2] and box[1] <= r["y"] <= box[3]


def test_each_file_holds_one_cell_of_one_month_and_readers_do_not_see_the_key(world) -> None:  # type: ignore[no-untyped-def]
    cb, _ = world
    for merged in (False, True):
        if merged:
            cb.maintain()
        files = [f for f, _ in cb.lake.data_files("pings")]
        keys = set()
        total = 0
        for f in files:
            t = pq.read_table(f, columns=["h3", "_tile", "ts"])
            tiles = set(t.column("_tile").to_pylist())
            months = {(v.year, v.month) for v in t.column("ts").to_pylist()}
            assert len(tiles) == 1 and len(months) == 1, f
            parents = {
                h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), 6)) for c in t.column("h3").to_pylist()
            }
            assert parents == tiles  # the key is the cell's ancestor, as H3 computes it
            keys.add((tiles.pop(), months.pop()))
            total += t.num_rows
        assert total == N and len(keys) > 20
        # Three flushes wrote up to three files per (cell, month); the merge leaves one.
        assert len(files) == len(keys) if merged else len(keys) < len(files) <= 3 * len(keys)
    assert "_tile" not in cb.query.bbox("pings", (116.3, 39.9, 116.4, 40.0)).column_names


def test_queries_on_narrowed_files_equal_brute_force(world) -> None:  # type: ignore[no-untyped-def]
    cb, rows = world
    q = cb.query
    box = (116.31, 39.91, 116.36, 39.95)
    with q.cursor() as cur:
        direct = q.files.scan(cur, "pings")
        assert direct is not None
        few = q.narrow(cur, direct, None, box)
        assert 0 < len(few.files) < len(direct.files) / 4  # a small box opens a few files
    got = sorted(q.bbox("pings", box).column("id").to_pylist())
    want = sorted(r["id"] for r in rows if _inside(r, box))
    assert got == want and len(want) > 20
    # B2: the box in a window across the month boundary.
    t0, t1 = T0 + timedelta(days=25), T0 + timedelta(days=40)
    got = sorted(q.range("pings", box, t0, t1).column("id").to_pylist())
    want = sorted(r["id"] for r in rows if _inside(r, box) and t0 <= r["ts"] < t1)
    assert got == want and len(want) > 5
    # A polygon: narrowed by its bounds, tested exactly.
    tri = "POLYGON ((116.25 39.85, 116.45 39.85, 116.25 40.0, 116.25 39.85))"
    poly = shapely.from_wkt(tri)
    got = sorted(q.within("pings", tri).column("id").to_pylist())
    want = sorted(r["id"] for r in rows if shapely.intersects_xy(poly, r["x"], r["y"]))
    assert got == want and len(want) > 100
    # B4: the nearest, across cell borders.
    for cx, cy in [(116.4, 39.95), (116.2, 39.8), (116.5, 40.05)]:
        got = q.nearest("pings", cx, cy, k=7)
        d = haversine_np(np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows]), cx, cy)
        assert np.allclose(np.sort(got.column("distance_m").to_numpy()), np.sort(d)[:7])


def test_narrowing_respects_masked_positions_and_the_scope_window(world) -> None:  # type: ignore[no-untyped-def]
    cb, rows = world
    q = cb.query
    # Rounded longitudes may fall in a box the stored ones miss: files are not narrowed by them.
    box = (116.35, 39.9, 116.35, 40.0)
    masked = ReadScope(masked={"lon": "round(lon, 2)"})
    got = sorted(q.bbox("pings", box, scope=masked).column("id").to_pylist())
    want = sorted(r["id"] for r in rows if round(r["x"], 2) == 116.35 and 39.9 <= r["y"] <= 40.0)
    assert got == want and len(want) > 5
    # The scope's window narrows the files and still bounds the rows.
    s0, s1 = T0 + timedelta(days=31), T0 + timedelta(days=33)
    windowed = ReadScope(start=s0, end=s1)
    big = (116.2, 39.8, 116.6, 40.1)
    got = sorted(q.range("pings", big, T0, T0 + timedelta(days=90), scope=windowed).column("id").to_pylist())
    assert got == sorted(r["id"] for r in rows if s0 <= r["ts"] < s1)
    near = q.nearest("pings", 116.4, 39.95, k=3, scope=windowed)
    inside = [r for r in rows if s0 <= r["ts"] < s1]
    d = haversine_np(np.array([r["x"] for r in inside]), np.array([r["y"] for r in inside]), 116.4, 39.95)
    assert np.allclose(np.sort(near.column("distance_m").to_numpy()), np.sort(d)[:3])


def test_partition_cells_is_checked_when_declared(tmp_path: Path) -> None:
    with CityBase.open(tmp_path / "base") as cb:
        for bad, why in [(11, "less than or equal to 10"), (-1, "greater than or equal to 0")]:
            with pytest.raises(DeclarationError, match=why):
                cb.declare({**SPEC, "partition_cells": bad})
        records = {**SPEC, "kind": "records", "geometry": None, "name": "recs"}
        with pytest.raises(DeclarationError, match="partition_cells needs a geometry or an address field"):
            cb.declare(records)


@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
def test_dask_reads_the_tiled_files_without_citybase(world) -> None:  # type: ignore[no-untyped-def]
    """No `_tile=<id>` folders: Dask would take the key from the path as text and fail."""
    dd = pytest.importorskip("dask.dataframe", reason="no Dask: pip install 'citybase[cluster]'")
    cb, rows = world
    frame = dd.read_parquet([f for f, _ in cb.lake.data_files("pings")])
    assert len(frame) == N
    assert float(frame["lon"].sum().compute()) == pytest.approx(sum(r["x"] for r in rows), rel=1e-12)


def test_a_commit_reads_the_footers_of_its_new_files_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = [
        {"id": i, "ts": T0 + timedelta(hours=i), "x": float(rng.uniform(116.2, 116.6)), "y": 39.9}
        for i in range(400)
    ]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(SPEC)
        cb.ingest("pings", rows[:300])
        cb.flush()
        q = cb.query
        with q.cursor() as cur:
            first = q.files.scan(cur, "pings")
            assert first is not None
            before = dict(first.bounds(cur, "lon", "DOUBLE"))
        cb.ingest("pings", rows[300:])
        cb.flush()
        with q.cursor() as cur:
            second = q.files.scan(cur, "pings")
            assert second is not None and second is not first
            new = set(second.files) - set(first.files)
            assert new and second._bounds["lon"] == {f: b for f, b in before.items() if f in second.files}
            got = second.bounds(cur, "lon", "DOUBLE")
            for f in new:  # read from the new file's footer, as pyarrow reads the file
                lon = pq.read_table(f, columns=["lon"]).column("lon").to_numpy()
                assert got[f] == (lon.min(), lon.max())
        box = (116.3, 39.8, 116.4, 40.0)
        assert sorted(q.bbox("pings", box).column("id").to_pylist()) == [
            r["id"] for r in rows if _inside(r, box)
        ]
