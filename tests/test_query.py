"""The query box against brute force: NumPy/Shapely answers, never SQL, on random data and on GeoLife.

Two worlds, each built once per session: a random city (irregular districts, a management grid,
tracks with stays, events, parcels, a table with no location, and a tiny batch DuckLake keeps
inlined in its catalog), and real Beijing (its 16 districts and the 217,653 GeoLife points of the
scikit-mobility sample). The property-based tests in test_query_props.py reuse the random world.
"""

from __future__ import annotations

import doctest
import importlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import h3
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from citybase.errors import InputError, NotFound
from citybase.model.city import Level
from citybase.places.city import City, Layer
from citybase.places.index import polygonal
from citybase.platform import CityBase
from citybase.query import QueryEngine, ReadScope, ScopeError, nearest, to_geodataframe
from citybase.query.aggregate import h3_parent_sql

R = 6_371_008.8  # metres, the query box's sphere
ORIGIN = np.datetime64("2000-01-03T00:00:00", "us")  # time_bucket's origin (a Monday)
REGION = (116.20, 39.80, 116.60, 40.10)
T0 = datetime(2024, 3, 1)


# -- brute-force references (NumPy / Shapely) ---------------------------------------------------


def hav(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.subtract(lon2, lon1)) / 2) ** 2
    )
    return 2 * R * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def first_area(geoms: npt.NDArray[np.object_], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> Any:
    """Index of the first area that intersects each point (boundary included), else -1."""
    out = np.full(len(x), -1)
    for i in range(len(geoms) - 1, -1, -1):
        out[shapely.intersects_xy(geoms[i], x, y)] = i
    return out


def codes_of(geoms: npt.NDArray[np.object_], codes: list[str], x: Any, y: Any) -> npt.NDArray[np.object_]:
    idx = first_area(geoms, np.asarray(x), np.asarray(y))
    return np.array([codes[i] if i >= 0 else None for i in idx], dtype=object)


def stays_one_by_one(
    group: npt.NDArray[np.int64],
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    radius: float,
    min_s: float,
) -> list[tuple[int, int]]:
    """Li et al.'s stay points over rows sorted by (group, time), one anchor at a time."""
    out, n, i = [], len(t), 0
    while i < n:
        j = i + 1
        while j < n and group[j] == group[i] and hav(x[i], y[i], x[j], y[j]) <= radius:
            j += 1
        if t[j - 1] - t[i] >= min_s * 1e6:
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def stays_reference(df: pd.DataFrame, radius: float, min_s: float) -> list[tuple[Any, int, int]]:
    """`stays_one_by_one` per object: (object, first position, end position in its track)."""
    out = []
    for obj, g in df.groupby("obj", sort=True):
        g = g.sort_values(["t", "lon", "lat"], kind="stable")
        t = g["t"].to_numpy().astype("datetime64[us]").astype(np.int64)
        same = np.zeros(len(g), dtype=np.int64)
        out += [
            (obj, i, j)
            for i, j in stays_one_by_one(same, t, g["lon"].to_numpy(), g["lat"].to_numpy(), radius, min_s)
        ]
    return out


def bucket(t: pd.Series, width: np.timedelta64) -> pd.Series:
    us = t.to_numpy().astype("datetime64[us]")
    w = width.astype("timedelta64[us]")
    return pd.Series(ORIGIN + ((us - ORIGIN) // w) * w, index=t.index)


def rids(t: pa.Table) -> list[int]:
    return sorted(t.column("rid").to_pylist())


# -- the random world ---------------------------------------------------------------------------


@dataclass
class World:
    cb: CityBase
    q: QueryEngine
    pings: pd.DataFrame
    events: pd.DataFrame
    parcels: pd.DataFrame
    districts: npt.NDArray[np.object_]
    district_codes: list[str]
    grid: npt.NDArray[np.object_]
    grid_codes: list[str]


PINGS = {
    "name": "pings",
    "department": "transport",
    "system": "fleet",
    "kind": "tracks",
    "time_field": "t",
    "object_field": "obj",
    "partition": "day",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "obj", "type": "string"},
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        {"name": "pm25", "type": "float"},
        {"name": "rid", "type": "int"},
    ],
}
EVENTS = {
    "name": "events",
    "department": "citizen",
    "system": "hotline",
    "kind": "points",
    "time_field": "t",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        {"name": "category", "type": "string"},
        {"name": "rid", "type": "int"},
    ],
}
PARCELS = {
    "name": "parcels",
    "department": "planning",
    "system": "cadastre",
    "kind": "areas",
    "geometry": {"field": "shape", "encoding": "wkt"},
    "fields": [
        {"name": "rid", "type": "int"},
        {"name": "shape", "type": "string"},
        {"name": "landuse", "type": "string"},
    ],
}
REGISTRY = {
    "name": "registry",
    "department": "civil",
    "system": "registry",
    "kind": "records",
    "fields": [{"name": "name", "type": "string"}, {"name": "value", "type": "int"}],
}


def make_pings(rng: np.random.Generator, objects: int = 40, per: int = 1500) -> pd.DataFrame:
    frames = []
    rid = 0
    for k in range(objects):
        # Moves of ~50 m every 1-30 s, with dwells: runs of points jittering within metres.
        dwell = rng.random(per) < 0.004
        dwell_len = np.zeros(per, dtype=int)
        dwell_len[dwell] = rng.integers(20, 120, dwell.sum())
        moving = np.ones(per, dtype=bool)
        for i in np.nonzero(dwell)[0]:
            moving[i : i + dwell_len[i]] = False
        step = np.where(moving[:, None], rng.normal(0, 0.0005, (per, 2)), rng.normal(0, 0.00002, (per, 2)))
        start = rng.uniform([REGION[0] + 0.05, REGION[1] + 0.05], [REGION[2] - 0.05, REGION[3] - 0.05])
        xy = start + np.cumsum(step, axis=0)
        xy[:, 0] = np.clip(xy[:, 0], REGION[0], REGION[2])
        xy[:, 1] = np.clip(xy[:, 1], REGION[1], REGION[3])
        dt = np.where(moving, rng.integers(1, 31, per), rng.integers(5, 20, per))
        t = (
            np.datetime64(T0, "us")
            + np.timedelta64(int(rng.integers(0, 86400)), "s")
            + np.cumsum(dt).astype("timedelta64[s]")
        )
        pm = rng.gamma(2, 30, per)
        pm[rng.random(per) < 0.05] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "obj": f"v{k:02d}",
                    "t": t,
                    "lon": xy[:, 0],
                    "lat": xy[:, 1],
                    "pm25": pm,
                    "rid": rid + np.arange(per),
                }
            )
        )
        rid += per
    return pd.concat(frames, ignore_index=True)


def random_parcels(rng: np.random.Generator, n: int) -> pd.DataFrame:
    geoms = []
    for i in range(n):
        c = rng.uniform(REGION[:2], REGION[2:])
        if i % 3 == 0:
            w, h = rng.uniform(0.002, 0.03, 2)
            geoms.append(shapely.box(c[0] - w, c[1] - h, c[0] + w, c[1] + h))
        else:
            geoms.append(
                shapely.Point(c).buffer(float(rng.uniform(0.002, 0.02)), quad_segs=int(rng.integers(2, 6)))
            )
    return pd.DataFrame(
        {"rid": np.arange(n), "geom": geoms, "landuse": rng.choice(["park", "housing", "road"], n)}
    )


def to_rows(df: pd.DataFrame, **rename: str) -> pa.Table:
    out = df.rename(columns=rename)
    return pa.Table.from_pandas(out, preserve_index=False)


def build_world(root: Path) -> World:
    rng = np.random.default_rng(20261123)
    seeds = shapely.MultiPoint(rng.uniform(REGION[:2], REGION[2:], (6, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=shapely.box(*REGION)))
    districts = np.array([c.intersection(shapely.box(*REGION)) for c in cells], dtype=object)
    dcodes = [f"D{i}" for i in range(len(districts))]
    gx, gy = np.meshgrid(
        np.arange(REGION[0], REGION[2] - 1e-9, 0.1), np.arange(REGION[1], REGION[3] - 1e-9, 0.1)
    )
    grid = np.array(
        [shapely.box(x, y, x + 0.1, y + 0.1) for x, y in zip(gx.ravel(), gy.ravel(), strict=True)]
    )
    gcodes = [f"G{i:02d}" for i in range(len(grid))]

    def layer(level: Level, geoms: npt.NDArray[np.object_], codes: list[str]) -> Layer:
        c = np.array(codes, dtype=object)
        names = np.array([f"{level.value} {x}" for x in codes], dtype=object)
        return Layer(level, c, names, np.array([None] * len(codes), dtype=object), geoms)

    city = City(
        "random",
        "UTC",
        12,
        {
            Level.district: layer(Level.district, districts, dcodes),
            Level.grid: layer(Level.grid, grid, gcodes),
        },
    )
    cb = CityBase(root)
    cb.setup_city(city)
    for spec in (PINGS, EVENTS, PARCELS, REGISTRY):
        cb.declare(spec)
    pings = make_pings(rng)
    # Three commits (three files per day partition), then a batch small enough to stay inlined.
    n = len(pings)
    for part in (pings.iloc[: n // 3], pings.iloc[n // 3 : 2 * n // 3], pings.iloc[2 * n // 3 :]):
        cb.ingest("pings", to_rows(part, lon="x", lat="y"))
        cb.flush()
    tiny = pd.DataFrame(
        {
            "obj": "tiny",
            "t": [np.datetime64(T0, "us") + np.timedelta64(3600 * i, "s") for i in range(5)],
            "lon": [116.40, 116.401, 116.402, 116.5, 116.3],
            "lat": [39.95, 39.951, 39.95, 40.0, 39.9],
            "pm25": [1.0, 2.0, 3.0, 4.0, 5.0],
            "rid": n + np.arange(5),
        }
    )
    cb.ingest("pings", to_rows(tiny, lon="x", lat="y"))
    cb.flush()
    pings = pd.concat([pings, tiny], ignore_index=True)
    m = 300
    events = pd.DataFrame(
        {
            "t": np.datetime64(T0, "us") + rng.integers(0, 3 * 86400, m).astype("timedelta64[s]"),
            "lon": rng.uniform(REGION[0] - 0.02, REGION[2] + 0.02, m),
            "lat": rng.uniform(REGION[1] - 0.02, REGION[3] + 0.02, m),
            "category": rng.choice(["noise", "road", "water"], m),
            "rid": np.arange(m),
        }
    )
    cb.ingest("events", to_rows(events, lon="x", lat="y"))
    parcels = random_parcels(rng, 40)
    cb.ingest(
        "parcels",
        pa.table(
            {
                "rid": parcels["rid"].to_numpy(),
                "shape": shapely.to_wkt(parcels["geom"].to_numpy(), rounding_precision=-1),
                "landuse": parcels["landuse"].to_numpy(),
            }
        ),
    )
    cb.ingest("registry", [{"name": "a", "value": 1}, {"name": "b", "value": 2}])
    cb.flush()
    for df in (pings, events):
        df["district"] = codes_of(districts, dcodes, df["lon"], df["lat"])
        df["grid"] = codes_of(grid, gcodes, df["lon"], df["lat"])
    return World(cb, QueryEngine(cb.lake, cb.city), pings, events, parcels, districts, dcodes, grid, gcodes)


_WORLDS: dict[str, World] = {}


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    """The random world, built once per session (test_query_props.py imports this fixture too)."""
    if "random" not in _WORLDS:
        _WORLDS["random"] = build_world(Path(tempfile.mkdtemp(prefix="citybase-query-")))
    yield _WORLDS["random"]
    # Each module importing the fixture tears it down at the session's end: close once.
    w = _WORLDS.pop("random", None)
    if w is not None:
        w.cb.close()
        shutil.rmtree(w.cb.root, ignore_errors=True)


# -- B1, B2 ----------------------------------------------------------------------------------------


def test_world_is_stored(world: World) -> None:
    stats = world.cb.lake.stats()
    assert stats == {"pings": len(world.pings), "events": 300, "parcels": 40, "registry": 2}
    assert len(world.cb.quarantine()) == 0


def test_bbox_points_match_numpy(world: World) -> None:
    rng = np.random.default_rng(1)
    df = world.pings
    for _ in range(12):
        x0, y0 = rng.uniform(REGION[:2], REGION[2:])
        w, h = rng.uniform(0.001, 0.2, 2)
        box = (x0, y0, x0 + w, y0 + h)
        want = df.rid[(df.lon >= box[0]) & (df.lon <= box[2]) & (df.lat >= box[1]) & (df.lat <= box[3])]
        assert rids(world.q.bbox("pings", box)) == sorted(want)


def test_bbox_edges_are_included(world: World) -> None:
    p = world.pings.iloc[123]
    got = world.q.bbox("pings", (p.lon, p.lat, p.lon, p.lat))
    assert p.rid in got.column("rid").to_pylist()


def test_within_polygon_matches_shapely(world: World) -> None:
    rng = np.random.default_rng(2)
    df = world.pings
    shapes = [
        shapely.Point(rng.uniform(REGION[:2], REGION[2:])).buffer(0.03, quad_segs=3),
        shapely.Polygon(rng.uniform(REGION[:2], REGION[2:], (3, 2))),
        world.districts[2],
        shapely.box(116.3, 39.9, 116.35, 39.95).difference(shapely.box(116.32, 39.92, 116.33, 39.93)),
    ]
    for g in shapes:
        want = df.rid[shapely.intersects_xy(g, df.lon.to_numpy(), df.lat.to_numpy())]
        assert rids(world.q.within("pings", g)) == sorted(want)
        assert rids(world.q.within("pings", g.wkt)) == rids(world.q.within("pings", g))


def test_areas_meet_box_and_polygon(world: World) -> None:
    geoms = world.parcels["geom"].to_numpy()
    box = (116.3, 39.85, 116.45, 39.97)
    want = world.parcels.rid[shapely.intersects(geoms, shapely.box(*box))]
    got = world.q.bbox("parcels", box)
    assert rids(got) == sorted(want)
    poly = shapely.Point(116.4, 39.95).buffer(0.07)
    want = world.parcels.rid[shapely.intersects(geoms, poly)]
    assert rids(world.q.within("parcels", poly)) == sorted(want)


def test_range_matches_numpy(world: World) -> None:
    df = world.pings
    box = (116.25, 39.85, 116.5, 40.0)
    start, end = T0 + timedelta(hours=20), T0 + timedelta(hours=31)
    inside = (df.lon >= box[0]) & (df.lon <= box[2]) & (df.lat >= box[1]) & (df.lat <= box[3])
    when = (df.t >= start) & (df.t < end)
    assert rids(world.q.range("pings", box, start, end)) == sorted(df.rid[inside & when])
    # An aware time means the same instant; open ends; a polygon instead of a box.
    aware = "2024-03-01T21:00:00+01:00"
    assert rids(world.q.range("pings", box, aware, end)) == rids(world.q.range("pings", box, start, end))
    assert rids(world.q.range("pings", box, None, end)) == sorted(df.rid[inside & (df.t < end)])
    poly = world.districts[0]
    ok = shapely.intersects_xy(poly, df.lon.to_numpy(), df.lat.to_numpy())
    assert rids(world.q.range("pings", poly, start, end)) == sorted(df.rid[ok & when])


def test_inlined_rows_are_read(world: World) -> None:
    got = world.q.range("pings", (116.399, 39.949, 116.403, 39.952), T0, T0 + timedelta(hours=3))
    assert {60000, 60001, 60002} <= set(got.column("rid").to_pylist())


def test_bbox_prunes_by_h3_ranges(world: World) -> None:
    src = world.q.spatial_source("pings", None, (116.30, 39.90, 116.31, 39.91))
    assert '"h3" BETWEEN' in src.sql
    # Not for areas (their cell is of one point on them), nor for masked coordinates.
    assert "BETWEEN" not in world.q.spatial_source("parcels", None, (116.30, 39.90, 116.31, 39.91)).sql
    masked = ReadScope(masked={"lon": "round(lon, 2)"})
    assert "BETWEEN" not in world.q.spatial_source("pings", masked, (116.30, 39.90, 116.31, 39.91)).sql
    with world.q.cursor() as cur:
        plan = cur.execute(f"EXPLAIN SELECT * FROM {src.sql} WHERE lon BETWEEN 116.30 AND 116.31").fetchall()
    text = "\n".join(r[1] for r in plan)
    assert "h3>=" in text.replace(" ", "") and "lon>=" in text.replace(" ", "")


# -- B3, B7 ----------------------------------------------------------------------------------------


def test_track_is_one_object_in_time_order(world: World) -> None:
    df = world.pings
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=30)
    for obj in ("v03", "v17", "tiny"):
        want = df[(df.obj == obj) & (df.t >= start) & (df.t < end)].sort_values(
            ["t", "lon", "lat"], kind="stable"
        )
        got = world.q.track("pings", obj, start, end)
        assert got.column("rid").to_pylist() == want.rid.tolist()
    assert world.q.track("pings", "nobody").num_rows == 0


def test_trajectories_match_numpy(world: World) -> None:
    df = world.pings
    start, end = T0, T0 + timedelta(hours=40)
    sub = df[(df.t >= start) & (df.t < end)]
    stats, stays = world.q.trajectories("pings", start, end, stay_radius_m=50, stay_min_s=300)
    got = {r["obj"]: r for r in stats.to_pylist()}
    assert list(got) == sorted(set(sub.obj))  # one row per object, in the objects' order
    for obj, g in sub.groupby("obj"):
        g = g.sort_values(["t", "lon", "lat"], kind="stable")
        x, y = g.lon.to_numpy(), g.lat.to_numpy()
        tus = g.t.to_numpy().astype("datetime64[us]").astype(np.int64)
        steps = hav(x[:-1], y[:-1], x[1:], y[1:])
        dts = np.diff(tus) / 1e6
        r = got[obj]
        assert r["points"] == len(g)
        assert r["length_m"] == pytest.approx(steps.sum(), rel=1e-9)
        assert r["duration_s"] == pytest.approx((tus[-1] - tus[0]) / 1e6)
        assert (r["first_time"], r["last_time"]) == (g.t.iloc[0], g.t.iloc[-1])
        assert r["max_speed_mps"] == pytest.approx((steps[dts > 0] / dts[dts > 0]).max(), rel=1e-9)
        assert r["mean_speed_mps"] == pytest.approx(steps.sum() / ((tus[-1] - tus[0]) / 1e6), rel=1e-9)
    ref = stays_reference(sub, 50, 300)
    assert len(ref) > 20  # the generator's dwells are found
    assert stays.num_rows == len(ref)
    want_sizes = [(o, j - i) for o, i, j in ref]
    assert (
        list(zip(stays.column("obj").to_pylist(), stays.column("points").to_pylist(), strict=True))
        == want_sizes
    )
    counts = pd.Series([o for o, _, _ in ref]).value_counts()
    assert {r["obj"]: r["stays"] for r in stats.to_pylist()} == {o: int(counts.get(o, 0)) for o in got}
    # Each stay's centre is the mean of its points.
    tracks = {o: g.sort_values(["t", "lon", "lat"], kind="stable") for o, g in sub.groupby("obj")}
    for (o, i, j), stay in zip(ref, stays.to_pylist(), strict=True):
        g = tracks[o]
        assert stay["lon"] == pytest.approx(g.lon.iloc[i:j].mean(), abs=1e-12)
        assert stay["lat"] == pytest.approx(g.lat.iloc[i:j].mean(), abs=1e-12)
        assert (stay["arrival"], stay["departure"]) == (
            g.t.iloc[i].to_pydatetime(),
            g.t.iloc[j - 1].to_pydatetime(),
        )


def test_trajectories_order_points_of_one_time_by_lon_then_lat(tmp_path: Path) -> None:
    """Rows of one object at one time are stepped through by lon, then lat, whatever their order in
    the lake (B7 sorts by object and time only, and orders such ties itself)."""
    from citybase.query.demo import PINGS, demo_city

    cb = CityBase(tmp_path / "ties")
    cb.setup_city(demo_city())
    cb.declare(PINGS)
    t0 = datetime(2024, 5, 1, 8)
    at = [
        (0, 116.30, 39.92),
        (60, 116.33, 39.92),
        (60, 116.31, 39.92),
        (60, 116.32, 39.92),
        (120, 116.34, 39.92),
    ]
    at += [(0, 116.35, 39.90), (60, 116.35, 39.93), (60, 116.35, 39.91), (120, 116.35, 39.94)]
    rows = [
        {"vehicle": "a" if k < 5 else "b", "t": t0 + timedelta(seconds=s), "x": x, "y": y}
        for k, (s, x, y) in enumerate(at)
    ]
    cb.ingest("pings", rows)
    cb.flush()
    stats, _ = QueryEngine(cb.lake, cb.city).trajectories("pings")
    got = {r["vehicle"]: r for r in stats.to_pylist()}
    # In that order, each is one straight run, no step going back (which would add ~1.7 km to a).
    for obj, xs, ys in (
        ("a", [116.30, 116.31, 116.32, 116.33, 116.34], [39.92] * 5),
        ("b", [116.35] * 4, [39.90, 39.91, 39.93, 39.94]),
    ):
        steps = hav(np.array(xs[:-1]), np.array(ys[:-1]), np.array(xs[1:]), np.array(ys[1:]))
        assert got[obj]["length_m"] == pytest.approx(steps.sum(), rel=1e-9)
    assert got["a"]["points"] == 5 and got["b"]["points"] == 4
    cb.close()


def test_trajectories_of_a_single_point_and_empty_window(world: World) -> None:
    stats, stays = world.q.trajectories("pings", T0 + timedelta(days=30), T0 + timedelta(days=31))
    assert stats.num_rows == 0 and stays.num_rows == 0
    one = world.q.trajectories("pings", scope=ReadScope(row_filter="rid = 60000"))[0].to_pylist()
    assert one[0]["points"] == 1 and one[0]["length_m"] == 0 and one[0]["mean_speed_mps"] is None


# -- B4, B8 ----------------------------------------------------------------------------------------


def check_nearest(q: QueryEngine, df: pd.DataFrame, lon: float, lat: float, k: int, **kw: Any) -> pa.Table:
    got = q.nearest("pings", lon, lat, k, **kw)
    sel = df
    if kw.get("start") is not None:
        sel = sel[sel.t >= kw["start"]]
    if kw.get("end") is not None:
        sel = sel[sel.t < kw["end"]]
    d = hav(lon, lat, sel.lon.to_numpy(), sel.lat.to_numpy())
    order = np.argsort(d, kind="stable")[:k]
    want = d[order]
    if kw.get("max_distance_m") is not None:
        want = want[want <= kw["max_distance_m"]]
    assert np.allclose(got.column("distance_m").to_numpy(), want, rtol=1e-9, atol=1e-6)
    if len(want) and (len(d) <= k or np.sort(d)[min(k, len(d) - 1)] > want[-1] + 1e-6):
        assert rids(got) == sorted(sel.rid.to_numpy()[order][: len(want)])
    return got


def test_nearest_matches_brute_force(world: World) -> None:
    rng = np.random.default_rng(4)
    df = world.pings
    for k in (1, 7, 60):
        for _ in range(4):
            lon, lat = rng.uniform(REGION[:2], REGION[2:])
            check_nearest(world.q, df, float(lon), float(lat), k)
    # Far from every point: the circles grow to a full scan.
    check_nearest(world.q, df, 110.0, 30.0, 3)
    # On a stored point: distance 0.
    p = df.iloc[777]
    assert check_nearest(world.q, df, p.lon, p.lat, 1).column("distance_m")[0].as_py() == 0


def test_nearest_with_time_and_max_distance(world: World) -> None:
    df = world.pings
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=6)
    check_nearest(world.q, df, 116.4, 39.95, 5, start=start, end=end)
    got = check_nearest(world.q, df, 116.4, 39.95, 50, max_distance_m=300.0)
    assert got.num_rows < 50
    assert check_nearest(world.q, df, 116.9, 40.5, 5, max_distance_m=1000.0).num_rows == 0


def test_nearest_remembers_the_radius(world: World) -> None:
    world.q.nearest("pings", 116.4, 39.95, 10)
    assert 10 < world.q.radius_hints["pings"] < 20_000


def test_nearest_reads_complete_files_directly(world: World, tmp_path: Path) -> None:
    q = world.q
    with q.cursor() as cur:
        # Every row is in a Parquet file (the lake inlines nothing in its catalog).
        assert q.files.scan(cur, "events") is not None
        assert q.files.scan(cur, "pings") is not None
    ev = world.events
    for lon, lat, k in [(116.4, 39.95, 5), (116.25, 39.82, 1), (117.5, 41.0, 3)]:
        got = q.nearest("events", lon, lat, k)
        d = np.sort(hav(lon, lat, ev.lon.to_numpy(), ev.lat.to_numpy()))[:k]
        assert np.allclose(got.column("distance_m").to_numpy(), d, rtol=1e-9, atol=1e-6)
    # A commit elsewhere in the lake invalidates what was checked; the answer stays complete.
    cb = CityBase(tmp_path / "fresh")
    cb.setup_city(world.cb.city)  # type: ignore[arg-type]
    cb.declare(EVENTS)
    cb.ingest("events", to_rows(ev.iloc[:50].drop(columns=["district", "grid"]), lon="x", lat="y"))
    cb.flush()
    fresh = QueryEngine(cb.lake, cb.city)
    assert fresh.nearest("events", 116.4, 39.95, 60).num_rows == 50
    cb.ingest("events", to_rows(ev.iloc[50:100].drop(columns=["district", "grid"]), lon="x", lat="y"))
    cb.flush()
    assert fresh.nearest("events", 116.4, 39.95, 60).num_rows == 60
    # A lake written with inlining on (another writer, an older citybase) has rows in no file:
    # those tables are read through DuckLake, and the answer stays complete.
    with cb.lake.transaction() as cur:
        cur.execute("CALL lake.set_option('data_inlining_row_limit', 10, table_name => 'events')")
    cb.ingest("events", to_rows(ev.iloc[100:103].drop(columns=["district", "grid"]), lon="x", lat="y"))
    cb.flush()  # three rows: inlined in the catalog
    with fresh.cursor() as cur:
        assert fresh.files.scan(cur, "events") is None
    assert fresh.nearest("events", 116.4, 39.95, 200).num_rows == 103
    cb.close()


def test_a_scope_time_window_is_tested_only_where_it_cuts(world: World) -> None:
    q, df = world.q, world.pings
    with q.cursor() as cur:
        scan = q.files.scan(cur, "pings")
        assert scan is not None
        span = scan.span(cur, "t")
    # The footers' span is the rows' span.
    assert span == (df.t.min().to_pydatetime(), df.t.max().to_pydatetime())
    first, last = span
    cases = [
        (first, None, False),  # holds every row: not tested
        (first - timedelta(days=1), last + timedelta(seconds=1), False),
        (first + timedelta(hours=3), None, True),  # cuts rows: tested
        (None, last, True),  # [.., last) leaves out the last row
    ]
    for start, end, tested in cases:
        scope = ReadScope(start=start, end=end)
        sql = q.source("pings", scope, table=scan.sql, span=span).sql
        assert ('"t" >=' in sql or '"t" <' in sql) == tested, (start, end)
        # Without a span (a DuckLake read) the window is always tested.
        assert '"t"' in q.source("pings", scope).sql
        sel = df[(df.t >= (start or first)) & ((df.t < end) if end is not None else True)]
        for lon, lat, k in [(116.4, 39.95, 7), (116.25, 39.82, 30)]:
            got = q.nearest("pings", lon, lat, k, scope=scope)
            want = np.sort(hav(lon, lat, sel.lon.to_numpy(), sel.lat.to_numpy()))[:k]
            assert np.allclose(got.column("distance_m").to_numpy(), want, rtol=1e-9, atol=1e-6)
            t = got.column("t").to_pandas()
            assert (t >= (start or first)).all() and (end is None or (t < end).all())


def nearest_join_reference(
    ev: pd.DataFrame, ob: pd.DataFrame, k: int, max_d: float | None, tol: timedelta | None
) -> dict[int, list[tuple[str, float]]]:
    out: dict[int, list[tuple[str, float]]] = {}
    objs = ob.obj.to_numpy()
    for e in ev.itertuples():
        d = hav(e.lon, e.lat, ob.lon.to_numpy(), ob.lat.to_numpy())
        ok = np.ones(len(d), dtype=bool)
        if tol is not None:
            ok &= np.abs((ob.t - e.t).to_numpy()) <= np.timedelta64(tol)
        if max_d is not None:
            ok &= d <= max_d
        best = pd.Series(d[ok]).groupby(objs[ok]).min().sort_values(kind="stable")
        out[e.rid] = list(best.iloc[:k].items())
    return out


@pytest.mark.parametrize(
    ("k", "max_d", "tol", "band_pairs"),
    [
        (1, None, None, None),
        (3, None, None, None),
        (2, 800.0, None, None),
        (2, None, timedelta(minutes=30), None),  # few pairs in the time bands: one join
        (2, None, timedelta(minutes=30), 0),  # growing circles within the time bands
    ],
)
@pytest.mark.parametrize("provenance", [True, False])
@pytest.mark.parametrize("per_k", [None, 0.01], ids=["first-radius", "tiny-first-radius"])
def test_nearest_join_matches_brute_force(
    world: World,
    k: int,
    max_d: float | None,
    tol: timedelta | None,
    band_pairs: int | None,
    provenance: bool,
    per_k: float | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if band_pairs is not None:
        monkeypatch.setattr(nearest, "TIME_BAND_PAIRS", band_pairs)
    if per_k is not None:  # first circles far too small: many passes
        monkeypatch.setattr(nearest, "FIRST_POSITIONS", per_k)
    ev = world.events.iloc[:40]
    # Without provenance in the objects' scope, pairs carry the whole row instead of (batch, line).
    hidden = None if provenance else ReadScope(fields=["obj", "t", "lon", "lat", "rid"])
    got = world.q.nearest_join(
        "events",
        "pings",
        k=k,
        max_distance_m=max_d,
        time_tolerance=tol,
        scope=ReadScope(row_filter="rid < 40"),
        objects_scope=hidden,
    )
    assert ("object__line" in got.column_names) == provenance
    ref = nearest_join_reference(ev, world.pings, k, max_d, tol)
    rows = got.to_pylist()
    assert {r["rid"] for r in rows} == set(ev.rid)
    for rid, want in ref.items():
        mine = [r for r in rows if r["rid"] == rid]
        if not want:
            assert len(mine) == 1 and mine[0]["rank"] is None
            continue
        assert [r["rank"] for r in mine] == list(range(1, len(want) + 1))
        assert np.allclose([r["distance_m"] for r in mine], [d for _, d in want], rtol=1e-9, atol=1e-6)


def test_nearest_join_points_to_points(world: World) -> None:
    # Objects without an object_field: every row is an object.
    got = world.q.nearest_join("events", "events", k=2, scope=ReadScope(row_filter="rid < 20"))
    ev = world.events
    for r in got.to_pylist():
        if r["rank"] == 1:
            assert r["distance_m"] == 0 and r["object_rid"] == r["rid"]
        else:
            d = np.sort(hav(r["lon"], r["lat"], ev.lon.to_numpy(), ev.lat.to_numpy()))
            assert r["distance_m"] == pytest.approx(d[1], rel=1e-9, abs=1e-6)


# -- B5, B6 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "every"), [("district", "1h"), ("grid", "1d"), ("district", None)])
def test_counts_by_place_match_pandas(world: World, level: str, every: str | None) -> None:
    df = world.pings
    start, end = T0 + timedelta(hours=3), T0 + timedelta(hours=40)
    got = world.q.counts_by_place(
        "pings", level, start, end, every=every, agg={"pm25": ["avg", "max", "count"]}
    )
    sel = df[(df.t >= start) & (df.t < end) & df[level].notna()].copy()
    keys = [level]
    if every is not None:
        sel["bucket"] = bucket(sel.t, {"1h": np.timedelta64(1, "h"), "1d": np.timedelta64(1, "D")}[every])
        keys.append("bucket")
    ref = (
        sel.groupby(keys)
        .agg(
            count=("rid", "size"),
            pm25_avg=("pm25", "mean"),
            pm25_max=("pm25", "max"),
            pm25_count=("pm25", "count"),
        )
        .reset_index()
    )
    g = got.to_pandas()
    assert list(g.columns) == [
        "code",
        "name",
        *(["bucket"] if every else []),
        "count",
        "pm25_avg",
        "pm25_max",
        "pm25_count",
    ]
    assert len(g) == len(ref)
    m = g.merge(ref, left_on=["code", *keys[1:]], right_on=keys, suffixes=("", "_ref"))
    assert len(m) == len(ref)
    assert (m["count"] == m["count_ref"]).all() and (m["pm25_count"] == m["pm25_count_ref"]).all()
    assert np.allclose(m["pm25_avg"], m["pm25_avg_ref"]) and np.allclose(m["pm25_max"], m["pm25_max_ref"])
    assert (g["name"] == level + " " + g["code"]).all()


@pytest.mark.parametrize(
    ("tz", "every"), [("Asia/Shanghai", "1d"), ("America/St_Johns", "1h"), ("America/St_Johns", "1d")]
)
def test_counts_by_the_clock_of_a_time_zone_match_pandas(world: World, tz: str, every: str) -> None:
    # Buckets follow the zone's clock (St John's is 2.5 h from UTC) and are labelled in it.
    got = world.q.counts_by_place("pings", "district", every=every, tz=tz).to_pandas()
    df = world.pings
    sel = df[df.district.notna()]
    local = sel.t.dt.tz_localize("UTC").dt.tz_convert(tz).dt.floor({"1h": "h", "1d": "D"}[every])
    ref = (
        sel.assign(bucket=local.dt.tz_localize(None))
        .groupby(["district", "bucket"])
        .size()
        .reset_index(name="n")
    )
    assert len(got) == len(ref) > 0
    m = got.merge(ref, left_on=["code", "bucket"], right_on=["district", "bucket"])
    assert len(m) == len(ref) and (m["count"] == m["n"]).all()
    # The same rows, bucketed differently from UTC's.
    utc = world.q.counts_by_place("pings", "district", every=every).to_pandas()
    assert utc["count"].sum() == got["count"].sum()
    assert len(utc) != len(got) or (utc["count"].to_numpy() != got["count"].to_numpy()).any()
    with pytest.raises(InputError, match="IANA"):
        world.q.h3_bins("pings", 7, every="1d", tz="Beijing time")


@pytest.mark.parametrize("level", ["district", "grid"])
def test_counts_through_places_of_the_same_or_another_level_match_pandas(world: World, level: str) -> None:
    df = world.pings
    districts = sorted(df.district.dropna().unique())[:2]
    grids = sorted(df.grid.dropna().unique())[::3]
    # Places of the grouping level are tested per group; of another level, per row.
    scope = ReadScope(places={"district": tuple(districts), "grid": tuple(grids)})
    got = world.q.counts_by_place("pings", level, every="1d", scope=scope).to_pandas()
    sel = df[df.district.isin(districts) & df.grid.isin(grids)].copy()
    sel["bucket"] = bucket(sel.t, np.timedelta64(1, "D"))
    ref = sel.groupby([level, "bucket"]).size().reset_index(name="n")
    assert len(got) == len(ref) > 0
    m = got.merge(ref, left_on=["code", "bucket"], right_on=[level, "bucket"])
    assert len(m) == len(ref) and (m["count"] == m["n"]).all()
    assert set(got["code"]) <= set(districts if level == "district" else grids)


def test_grid_bins_are_counts_by_grid(world: World) -> None:
    a = world.q.grid_bins("events", every="6h")
    b = world.q.counts_by_place("events", "grid", every="6h")
    assert a.equals(b)
    assert a.column("count").to_numpy().sum() == world.events.grid.notna().sum()


def test_counts_in_a_window_inside_a_month_read_the_copy_by_object(world: World, tmp_path: Path) -> None:
    """In month partitions, sorted by place, a window skips nothing inside a partition: one shorter
    than a month reads the copy by object instead, whose row groups hold a day each. The same
    counts as the world's own table (day partitions), with rows pushed since the copy's last
    maintenance too."""
    df = world.pings[["obj", "t", "lon", "lat", "pm25", "rid"]]
    cb = CityBase(tmp_path / "monthly")
    cb.setup_city(world.cb.city)  # type: ignore[arg-type]
    cb.declare({**PINGS, "partition": "month"})
    q = QueryEngine(cb.lake, cb.city)
    windows = [
        (T0 + timedelta(hours=3), T0 + timedelta(hours=40)),
        (T0 + timedelta(days=1), T0 + timedelta(days=2)),
    ]
    cb.ingest("pings", to_rows(df.iloc[: len(df) // 2], lon="x", lat="y"))
    cb.flush()
    assert q.window_table("pings", *windows[0]) is None  # no copy before the first maintenance
    cb.maintain()
    cb.ingest("pings", to_rows(df.iloc[len(df) // 2 :], lon="x", lat="y"))
    cb.flush()
    for start, end in windows:
        assert q.window_table("pings", start, end) is not None
        for level, every in (("district", "1h"), ("grid", "1d")):
            got = q.counts_by_place("pings", level, start, end, every=every, agg={"pm25": "avg"})
            want = world.q.counts_by_place("pings", level, start, end, every=every, agg={"pm25": "avg"})
            assert got.num_rows == want.num_rows > 0
            assert got.drop_columns("pm25_avg").equals(want.drop_columns("pm25_avg"))
            assert np.allclose(got.column("pm25_avg").to_numpy(), want.column("pm25_avg").to_numpy())
        got = q.h3_bins("pings", 9, start, end, every="1h")
        assert got.equals(world.q.h3_bins("pings", 9, start, end, every="1h")) and got.num_rows > 0
    # A month's window, or one without an end, reads the table.
    assert q.window_table("pings", T0, T0 + timedelta(days=28)) is None
    assert q.window_table("pings", T0, None) is None
    cb.close()


@pytest.mark.parametrize("res", [4, 7, 9, 12])
def test_h3_bins_match_h3_package(world: World, res: int) -> None:
    df = world.pings
    got = world.q.h3_bins("pings", res, every="1d")
    cells = [h3.cell_to_parent(h3.latlng_to_cell(y, x, 12), res) for x, y in zip(df.lon, df.lat, strict=True)]
    ref = pd.DataFrame({"cell": cells, "bucket": bucket(df.t, np.timedelta64(1, "D"))})
    ref = ref.groupby(["cell", "bucket"]).size().rename("count").reset_index()
    g = got.to_pandas()
    assert len(g) == len(ref)
    m = g.merge(ref, on=["cell", "bucket"], suffixes=("", "_ref"))
    assert len(m) == len(ref) and (m["count"] == m["count_ref"]).all()
    assert all(h3.str_to_int(c) == v for c, v in zip(g.cell, g.h3, strict=True))


def test_h3_parent_sql_matches_h3_package(world: World) -> None:
    rng = np.random.default_rng(6)
    cells = [
        h3.latlng_to_cell(float(y), float(x), 12) for x, y in rng.uniform([-180, -85], [180, 85], (300, 2))
    ]
    cells += [h3.latlng_to_cell(90, 0, 12), h3.latlng_to_cell(-90, 0, 12)]  # polar pentagon-side cells
    cells += [c for c in h3.get_res0_cells() if h3.is_pentagon(c)][:3]  # coarse pentagons
    with world.q.cursor() as cur:
        for res in range(0, 13):
            values = ", ".join(f"({h3.str_to_int(c)}::UBIGINT)" for c in cells)
            got = cur.execute(f"SELECT {h3_parent_sql('c', res)} FROM (VALUES {values}) AS v(c)").fetchall()
            for c, (p,) in zip(cells, got, strict=True):
                want = h3.str_to_int(h3.cell_to_parent(c, res)) if h3.get_resolution(c) >= res else None
                assert p == want, (c, res)


# -- everything about a place ----------------------------------------------------------------------


def test_about_place_matches_keys(world: World) -> None:
    code = world.district_codes[1]
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=50)
    r = world.q.about_place("district", code, start, end, limit_per_dataset=100_000)
    assert r.place == {"level": "district", "code": code, "name": f"district {code}"}
    p, e = world.pings, world.events
    want_p = p.rid[(p.district == code) & (p.t >= start) & (p.t < end)]
    want_e = e.rid[(e.district == code) & (e.t >= start) & (e.t < end)]
    assert rids(r["pings"]) == sorted(want_p) and rids(r["events"]) == sorted(want_e)
    ts = r["pings"].column("t").to_pylist()
    assert ts == sorted(ts, reverse=True)
    summary = {x["dataset"]: x for x in r.summary.to_pylist()}
    assert set(summary) == {"pings", "events", "parcels"}  # the registry has no place
    assert summary["pings"]["rows"] == len(want_p) and summary["pings"]["kind"] == "tracks"
    # Parcels have no time: all of those whose point on surface is in the district.
    on = shapely.point_on_surface(world.parcels["geom"].to_numpy())
    in_d = first_area(world.districts, shapely.get_x(on), shapely.get_y(on)) == 1
    assert rids(r["parcels"]) == sorted(world.parcels.rid[in_d])


def test_about_place_limits_and_scopes(world: World) -> None:
    code = world.district_codes[0]
    r = world.q.about_place("district", code, datasets=["pings"], limit_per_dataset=10)
    s = r.summary.to_pylist()[0]
    assert (
        r["pings"].num_rows == 10
        and s["returned"] == 10
        and s["rows"] == (world.pings.district == code).sum()
    )
    scoped = world.q.about_place("district", code, scopes={"events": ReadScope(fields=["rid", "district"])})
    assert list(scoped) == ["events"] and scoped["events"].column_names == ["rid", "district"]
    with pytest.raises(ScopeError):
        world.q.about_place("district", code, datasets=["pings"], scopes={"events": ReadScope()})
    with pytest.raises(NotFound):
        world.q.about_place("district", "nowhere")
    with pytest.raises(NotFound):
        world.q.about_place("building", "b1")


# -- scopes ----------------------------------------------------------------------------------------


def test_scope_projects_filters_and_masks_inside_the_query(world: World) -> None:
    df = world.pings
    scope = ReadScope(
        fields=["obj", "t", "lon", "lat", "rid"],
        row_filter="obj IN ('v01', 'v02')",
        masked={"obj": "'vehicle-' || right(obj, 2)"},
    )
    got = world.q.bbox("pings", REGION, scope=scope)
    assert got.column_names == ["obj", "t", "lon", "lat", "rid"]
    assert set(got.column("obj").to_pylist()) == {"vehicle-01", "vehicle-02"}
    assert rids(got) == sorted(df.rid[df.obj.isin(["v01", "v02"])])
    # Nearest among the visible rows, not the nearest rows filtered afterwards.
    sel = df[df.obj == "v05"]
    got = world.q.nearest("pings", 116.4, 39.95, 3, scope=ReadScope(row_filter="obj = 'v05'"))
    d = np.sort(hav(116.4, 39.95, sel.lon.to_numpy(), sel.lat.to_numpy()))[:3]
    assert np.allclose(got.column("distance_m").to_numpy(), d)
    # Aggregates see only the visible rows.
    c = world.q.counts_by_place("pings", "district", scope=ReadScope(row_filter="obj = 'v05'"))
    assert c.column("count").to_numpy().sum() == sel.district.notna().sum()


def test_masked_coordinates_are_what_queries_search(world: World) -> None:
    df = world.pings
    coarse = ReadScope(masked={"lon": "round(lon, 2)", "lat": "round(lat, 2)"})
    box = (116.35, 39.9, 116.4, 39.95)
    rx, ry = df.lon.round(2), df.lat.round(2)
    want = df.rid[(rx >= box[0]) & (rx <= box[2]) & (ry >= box[1]) & (ry <= box[3])]
    got = world.q.bbox("pings", box, scope=coarse)
    assert rids(got) == sorted(want)
    assert set(np.round(got.column("lon").to_numpy(), 2)) == set(got.column("lon").to_numpy())
    near = world.q.nearest("pings", 116.4, 39.95, 5, scope=coarse)
    d = np.sort(hav(116.4, 39.95, rx.to_numpy(), ry.to_numpy()))[:5]
    assert np.allclose(near.column("distance_m").to_numpy(), d)


def test_hidden_columns_cannot_be_queried(world: World) -> None:
    no_pos = ReadScope(fields=["obj", "t", "pm25"])
    with pytest.raises(ScopeError):
        world.q.bbox("pings", REGION, scope=no_pos)
    with pytest.raises(ScopeError):
        world.q.nearest("pings", 116.4, 39.9, scope=no_pos)
    with pytest.raises(ScopeError):
        world.q.counts_by_place("pings", "district", scope=no_pos)
    with pytest.raises(ScopeError):
        world.q.counts_by_place("pings", "district", agg={"rid": "sum"}, scope=ReadScope(fields=["district"]))
    with pytest.raises(InputError):
        world.q.bbox("pings", REGION, scope=ReadScope(fields=["nope"]))


# -- SQL -------------------------------------------------------------------------------------------


def test_sql_views_have_geometry(world: World) -> None:
    t = world.q.sql(
        "SELECT d.code, count(*) AS n FROM city.pings AS p JOIN city.place_district AS d "
        "ON ST_Intersects(d.geometry, p.geometry) GROUP BY ALL ORDER BY 1"
    )
    want = world.pings.district.value_counts().sort_index()
    assert t.column("code").to_pylist() == want.index.tolist()
    assert t.column("n").to_pylist() == want.tolist()
    t = world.q.sql("SELECT rid, ST_Area(geometry) AS a FROM city.parcels ORDER BY rid")
    assert np.allclose(t.column("a").to_numpy(), shapely.area(world.parcels["geom"].to_numpy()))
    # A trusted caller reaches the lake's tables too.
    assert world.q.sql("SELECT count(*) AS n FROM lake.events").column("n")[0].as_py() == 300


def test_scoped_sql_reads_only_granted_views(world: World) -> None:
    scopes = {"events": ReadScope(fields=["rid", "category", "lon", "lat"], row_filter="category = 'noise'")}
    t = world.q.sql(
        "WITH e AS (SELECT * FROM city.events) SELECT count(*) AS n, min(ST_X(geometry)) AS x FROM e",
        scopes=scopes,
    )
    noise = world.events[world.events.category == "noise"]
    assert t.to_pylist() == [{"n": len(noise), "x": noise.lon.min()}]
    assert world.q.sql("SELECT * FROM city.events", scopes=scopes).column_names == [
        "rid",
        "category",
        "lon",
        "lat",
        "geometry",
    ]
    for bad in (
        "SELECT * FROM lake.events",
        "SELECT * FROM city.pings",
        "SELECT * FROM read_parquet('x.parquet')",
        "SELECT * FROM city.events WHERE rid IN (SELECT rid FROM lake.pings)",
        "SELECT * FROM temp.main._city_events",
        "SELECT * FROM events",
    ):
        with pytest.raises(ScopeError):
            world.q.sql(bad, scopes=scopes)
    for bad in ("DELETE FROM lake.events", "SELECT 1; SELECT 2"):
        with pytest.raises(InputError):
            world.q.sql(bad, scopes=scopes)
    # Place layers are the city's reference: readable by everyone.
    assert (
        world.q.sql("SELECT count(*) AS n FROM city.place_grid", scopes=scopes).column("n")[0].as_py() == 12
    )


def test_two_scopes_do_not_leak_into_each_other(world: World) -> None:
    a = world.q.sql(
        "SELECT count(*) AS n FROM city.events", scopes={"events": ReadScope(row_filter="rid < 10")}
    )
    b = world.q.sql("SELECT count(*) AS n FROM city.events")
    assert a.column("n")[0].as_py() == 10 and b.column("n")[0].as_py() == 300


# -- GeoDataFrames, errors, docs -------------------------------------------------------------------


def test_to_geodataframe(world: World) -> None:
    pts = to_geodataframe(world.q.bbox("pings", (116.3, 39.9, 116.32, 39.92)))
    assert pts.crs.to_epsg() == 4326 and set(pts.geom_type) == {"Point"}
    assert np.allclose(pts.geometry.x, pts["lon"])
    areas = to_geodataframe(world.q.bbox("parcels", REGION))
    assert set(areas.geom_type) <= {"Polygon"} and "geom" not in areas.columns
    via_sql = to_geodataframe(world.q.sql("SELECT rid, geometry FROM city.events LIMIT 3"))
    assert len(via_sql) == 3 and set(via_sql.geom_type) == {"Point"}
    with pytest.raises(InputError):
        to_geodataframe(pa.table({"a": [1]}))


def test_errors_say_what_is_wrong(world: World) -> None:
    q = world.q
    with pytest.raises(NotFound):
        q.bbox("nope", REGION)
    with pytest.raises(InputError):
        q.bbox("pings", (1.0, 2.0, 0.0, 3.0))
    with pytest.raises(InputError):
        q.range("parcels", REGION, T0, T0 + timedelta(days=1))  # no time field
    with pytest.raises(InputError):
        q.range("pings", REGION, T0 + timedelta(days=1), T0)
    with pytest.raises(InputError):
        q.h3_bins("pings", 13)
    with pytest.raises(InputError):
        q.counts_by_place("pings", "district", agg={"pm25": "drop table"})
    with pytest.raises(InputError):
        q.counts_by_place("pings", "district", every="1 fortnight")
    with pytest.raises(InputError):
        q.counts_by_place("pings", "county")
    with pytest.raises(InputError):
        q.track("parcels", 1)
    with pytest.raises(InputError):
        q.nearest("pings", 200.0, 10.0)
    with pytest.raises(InputError):
        q.nearest_join("events", "parcels", time_tolerance="5min")


def test_string_values_are_quoted_not_injected(world: World) -> None:
    assert world.q.track("pings", "x' OR '1'='1").num_rows == 0


@pytest.mark.parametrize(
    "module",
    [
        "_sql",
        "scope",
        "prune",
        "core",
        "ranges",
        "tracks",
        "nearest",
        "aggregate",
        "place",
        "views",
        "frames",
        "engine",
        "demo",
        "__init__",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    name = "citybase.query" if module == "__init__" else f"citybase.query.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# -- real data: GeoLife in Beijing's districts -----------------------------------------------------


GEOLIFE = {
    "name": "geolife",
    "department": "research",
    "system": "geolife",
    "kind": "tracks",
    "time_field": "datetime",
    "object_field": "uid",
    "partition": "month",
    "geometry": {"lon": "lng", "lat": "lat"},
    "fields": [
        {"name": "lat", "type": "float"},
        {"name": "lng", "type": "float"},
        {"name": "datetime", "type": "timestamp"},
        {"name": "uid", "type": "string"},
    ],
}
INCIDENTS = {
    "name": "incidents",
    "department": "police",
    "system": "cad",
    "kind": "points",
    "time_field": "t",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        {"name": "rid", "type": "int"},
    ],
}


@dataclass
class Beijing:
    cb: CityBase
    q: QueryEngine
    points: pd.DataFrame  # lon, lat, t, obj (uid), district (brute force)
    incidents: pd.DataFrame
    districts: npt.NDArray[np.object_]
    codes: list[str]


@pytest.fixture(scope="module")
def beijing(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beijing]:
    import geopandas as gpd

    from citybase.gateway.readers.base import readers

    g = gpd.read_file(shared / "geometries/china_admin/beijing_districts.geojson")
    codes = [str(c) for c in g["adcode"]]
    layer = Layer(
        Level.district,
        np.array(codes, dtype=object),
        np.array(list(g["name"]), dtype=object),
        np.array([None] * len(g), dtype=object),
        np.array(list(g.geometry), dtype=object),
    )
    cb = CityBase(tmp_path_factory.mktemp("beijing"))
    # GeoLife times are GMT: a city in UTC stores them unchanged.
    cb.setup_city(City("beijing", "UTC", 12, {Level.district: layer}))
    cb.declare(GEOLIFE)
    cb.declare(INCIDENTS)
    path = shared / "trajectories/geolife_sample_skmob.txt.gz"
    raw = pd.read_csv(path, dtype={"uid": str})
    pts = pd.DataFrame({"lon": raw.lng, "lat": raw.lat, "t": pd.to_datetime(raw.datetime), "obj": raw.uid})
    if "csv" in readers():
        res = cb.load("geolife", path)
        assert res.added == len(raw) == 217_653
    else:  # pragma: no cover - before the CSV reader existed
        cb.ingest("geolife", pa.Table.from_pandas(raw, preserve_index=False))
        cb.flush()
    rng = np.random.default_rng(8)
    m = 30
    pick = pts.sample(m, random_state=3)
    inc = pd.DataFrame(
        {
            "t": pick.t.to_numpy() + rng.integers(-900, 900, m).astype("timedelta64[s]"),
            "lon": pick.lon.to_numpy() + rng.normal(0, 0.003, m),
            "lat": pick.lat.to_numpy() + rng.normal(0, 0.003, m),
            "rid": np.arange(m),
        }
    )
    cb.ingest("incidents", to_rows(inc, lon="x", lat="y"))
    cb.flush()
    geoms = np.array([polygonal(x) for x in g.geometry], dtype=object)
    pts["district"] = codes_of(geoms, codes, pts.lon, pts.lat)
    yield Beijing(cb, QueryEngine(cb.lake, cb.city), pts, inc, geoms, codes)
    cb.close()


def test_geolife_range_in_a_real_district(beijing: Beijing) -> None:
    p = beijing.points
    haidian = beijing.districts[beijing.codes.index("110108")]
    start, end = datetime(2008, 10, 24), datetime(2008, 11, 15)
    got = beijing.q.range("geolife", haidian, start, end)
    inside = shapely.intersects_xy(haidian, p.lon.to_numpy(), p.lat.to_numpy()) & (p.t >= start) & (p.t < end)
    assert got.num_rows == inside.sum() > 1000
    key = sorted(zip(got.column("datetime").to_pylist(), got.column("lon").to_pylist(), strict=True))
    want = sorted(zip(p.t[inside].dt.to_pydatetime(), p.lon[inside], strict=True))
    assert key == want


def test_geolife_bbox_and_track(beijing: Beijing) -> None:
    p = beijing.points
    box = (116.30, 39.97, 116.34, 40.01)
    inside = (p.lon >= box[0]) & (p.lon <= box[2]) & (p.lat >= box[1]) & (p.lat <= box[3])
    assert beijing.q.bbox("geolife", box).num_rows == inside.sum()
    start, end = datetime(2008, 10, 23), datetime(2008, 10, 25)
    got = beijing.q.track("geolife", "001", start, end)
    want = p[(p.obj == "001") & (p.t >= start) & (p.t < end)].sort_values(["t", "lon", "lat"], kind="stable")
    assert got.column("lon").to_pylist() == want.lon.tolist()


def test_geolife_nearest(beijing: Beijing) -> None:
    p = beijing.points
    for lon, lat, k in [(116.32, 39.99, 10), (116.40, 39.90, 3), (116.6, 40.2, 25), (115.0, 41.0, 2)]:
        got = beijing.q.nearest("geolife", lon, lat, k)
        d = np.sort(hav(lon, lat, p.lon.to_numpy(), p.lat.to_numpy()))[:k]
        assert np.allclose(got.column("distance_m").to_numpy(), d, rtol=1e-9, atol=1e-6)


def test_geolife_counts_by_district_per_day(beijing: Beijing) -> None:
    p = beijing.points
    got = beijing.q.counts_by_place("geolife", "district", every="1d").to_pandas()
    sel = p[p.district.notna()].copy()
    sel["bucket"] = bucket(sel.t, np.timedelta64(1, "D"))
    ref = sel.groupby(["district", "bucket"]).size().rename("n").reset_index()
    m = got.merge(ref, left_on=["code", "bucket"], right_on=["district", "bucket"])
    assert len(m) == len(ref) == len(got) and (m["count"] == m["n"]).all()
    assert set(got.name) <= {
        "海淀区",
        "朝阳区",
        "东城区",
        "西城区",
        "丰台区",
        "昌平区",
        "石景山区",
        "顺义区",
        "通州区",
        "大兴区",
        "房山区",
        "门头沟区",
        "怀柔区",
        "平谷区",
        "密云区",
        "延庆区",
    }


def test_geolife_h3_bins(beijing: Beijing) -> None:
    p = beijing.points
    got = beijing.q.h3_bins("geolife", 8).to_pandas()
    cells = pd.Series(
        [h3.cell_to_parent(h3.latlng_to_cell(y, x, 12), 8) for x, y in zip(p.lon, p.lat, strict=True)]
    )
    ref = cells.value_counts()
    assert dict(zip(got.cell, got["count"], strict=True)) == ref.to_dict()


def test_geolife_trajectories(beijing: Beijing) -> None:
    p = beijing.points
    start, end = datetime(2008, 10, 23), datetime(2008, 10, 26)
    sub = p[(p.t >= start) & (p.t < end)]
    stats, stays = beijing.q.trajectories("geolife", start, end, stay_radius_m=100, stay_min_s=600)
    for r in stats.to_pylist():
        g = sub[sub.obj == r["uid"]].sort_values(["t", "lon", "lat"], kind="stable")
        steps = hav(g.lon.to_numpy()[:-1], g.lat.to_numpy()[:-1], g.lon.to_numpy()[1:], g.lat.to_numpy()[1:])
        assert r["points"] == len(g) and r["length_m"] == pytest.approx(steps.sum(), rel=1e-9)
    ref = stays_reference(sub, 100, 600)
    assert len(ref) >= 3
    assert list(zip(stays.column("uid").to_pylist(), stays.column("points").to_pylist(), strict=True)) == [
        (o, j - i) for o, i, j in ref
    ]


@pytest.mark.parametrize(
    ("tol", "band_pairs"),
    [(timedelta(minutes=20), None), (timedelta(minutes=20), 0), (None, None)],
    ids=["within-20-min", "within-20-min-in-circles", "any-time"],
)
def test_geolife_nearest_join(
    beijing: Beijing, tol: timedelta | None, band_pairs: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a tolerance the pairs are hashed on time buckets (in one join, or in growing circles
    # when the bands hold many); without, DuckDB spatial's join of the circles' boxes.
    if band_pairs is not None:
        monkeypatch.setattr(nearest, "TIME_BAND_PAIRS", band_pairs)
    p = beijing.points
    got = beijing.q.nearest_join("incidents", "geolife", k=2, time_tolerance=tol)
    ref = nearest_join_reference(beijing.incidents, p, 2, None, tol)
    rows = got.to_pylist()
    for rid, want in ref.items():
        mine = [r for r in rows if r["rid"] == rid and r["rank"] is not None]
        assert [r["object_uid"] for r in mine] == [o for o, _ in want]
        assert np.allclose([r["distance_m"] for r in mine], [d for _, d in want], rtol=1e-9, atol=1e-6)


def test_geolife_about_a_district(beijing: Beijing) -> None:
    r = beijing.q.about_place("district", "110108", datetime(2008, 11, 1), datetime(2008, 12, 1))
    p = beijing.points
    want = ((p.district == "110108") & (p.t >= datetime(2008, 11, 1)) & (p.t < datetime(2008, 12, 1))).sum()
    assert r.place["name"] == "海淀区"
    assert {x["dataset"]: x["rows"] for x in r.summary.to_pylist()}["geolife"] == want
