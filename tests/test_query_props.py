"""Property-based tests of the query box (hypothesis): random points, boxes, windows, k, resolutions.

The pruning helpers are checked on their own (every point of an area lies in its H3 cover, every
point of a circle in its box), and so are B7's stay points (against Li et al.'s search, one point
at a time); then B1, B2, B4 and B6 against brute force on the random world of test_query.py (its
session fixture, built once).
"""

from __future__ import annotations

import math
from datetime import timedelta
from functools import cache

import h3
import numpy as np
import pandas as pd
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citybase.query.aggregate import h3_parent_sql
from citybase.query.prune import circle_bbox, cover_ranges, descendant_range
from citybase.query.tracks import stay_points
from test_query import REGION, T0, World, bucket, hav, rids, stays_one_by_one, world

__all__ = ["world"]  # the shared session fixture, imported for pytest to find

FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True)
LAKE = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

lons = st.floats(-170, 170, allow_nan=False)
lats = st.floats(-80, 80, allow_nan=False)


# -- pruning helpers -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(
    x=lons,
    y=lats,
    w=st.floats(1e-6, 1.5),
    h=st.floats(1e-6, 1.5),
    stored=st.integers(5, 15),
    seed=st.integers(0, 2**32 - 1),
)
def test_cover_holds_every_point_of_a_box(
    x: float, y: float, w: float, h: float, stored: int, seed: int
) -> None:
    box = (x, y, min(x + w, 179.0), min(y + h, 84.9))
    ranges = cover_ranges(box, stored)
    if ranges is None:
        return  # no cover: the query relies on lon/lat statistics alone
    rng = np.random.default_rng(seed)
    px = np.concatenate([rng.uniform(box[0], box[2], 50), [box[0], box[2], box[0], box[2]]])
    py = np.concatenate([rng.uniform(box[1], box[3], 50), [box[1], box[3], box[3], box[1]]])
    for a, b in zip(px, py, strict=True):
        c = h3.str_to_int(h3.latlng_to_cell(b, a, stored))
        assert any(r.lo <= c <= r.hi for r in ranges), (a, b)


@FAST
@given(x=lons, y=lats, r=st.floats(1e-4, 0.5), seed=st.integers(0, 2**32 - 1))
def test_cover_holds_every_point_of_a_polygon(x: float, y: float, r: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    poly = shapely.Polygon(np.c_[x + rng.uniform(-r, r, 3), y + rng.uniform(-r, r, 3)]).buffer(0)
    if poly.is_empty:
        return
    ranges = cover_ranges(poly, 12)
    if ranges is None:
        return
    b = poly.bounds
    cand = np.c_[rng.uniform(b[0], b[2], 200), rng.uniform(b[1], b[3], 200)]
    inner = cand[shapely.intersects_xy(poly, cand[:, 0], cand[:, 1])]
    for a, b in np.concatenate([shapely.get_coordinates(poly), inner]):
        c = h3.str_to_int(h3.latlng_to_cell(b, a, 12))
        assert any(rr.lo <= c <= rr.hi for rr in ranges)


@FAST
@given(
    x=st.floats(-180, 180),
    y=st.floats(-90, 90),
    radius=st.floats(0.1, 3_000_000),
    bearing=st.floats(0, 360),
    frac=st.floats(0, 1),
)
def test_circle_box_holds_the_circle(x: float, y: float, radius: float, bearing: float, frac: float) -> None:
    # The point at distance frac*radius in direction bearing (spherical destination formula).
    d = frac * radius / 6_371_008.8
    p1, l1, th = math.radians(y), math.radians(x), math.radians(bearing)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))
    l2 = l1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    px, py = (math.degrees(l2) + 540) % 360 - 180, math.degrees(p2)
    x0, y0, x1, y1 = circle_bbox(x, y, radius)
    assert y0 - 1e-9 <= py <= y1 + 1e-9
    assert x0 - 1e-9 <= px <= x1 + 1e-9


@FAST
@given(x=lons, y=lats, res=st.integers(0, 15), stored=st.integers(0, 15))
def test_descendant_range_brackets_descendants(x: float, y: float, res: int, stored: int) -> None:
    res, stored = min(res, stored), max(res, stored)
    fine = h3.latlng_to_cell(y, x, stored)
    ancestor = h3.cell_to_parent(fine, res)
    r = descendant_range(h3.str_to_int(ancestor), stored)
    assert r.lo <= h3.str_to_int(fine) <= r.hi
    for c in (h3.cell_to_center_child(ancestor, stored), fine):
        assert r.lo <= h3.str_to_int(c) <= r.hi


# -- B6: the parent cell by bit arithmetic ---------------------------------------------------------


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(
    cells=st.lists(st.tuples(lons, lats, st.integers(0, 15)), min_size=1, max_size=20),
    res=st.integers(0, 15),
)
def test_h3_parent_sql_is_cell_to_parent(
    world: World, cells: list[tuple[float, float, int]], res: int
) -> None:
    ids = [h3.latlng_to_cell(y, x, r) for x, y, r in cells]
    values = ", ".join(f"({h3.str_to_int(c)}::UBIGINT)" for c in ids)
    with world.q.cursor() as cur:
        got = [
            v
            for (v,) in cur.execute(
                f"SELECT {h3_parent_sql('c', res)} FROM (VALUES {values}) AS v(c)"
            ).fetchall()
        ]
    want = [h3.str_to_int(h3.cell_to_parent(c, res)) if h3.get_resolution(c) >= res else None for c in ids]
    assert got == want


# -- B7: stay points --------------------------------------------------------------------------------


@settings(FAST, max_examples=150)
@given(
    seed=st.integers(0, 2**32 - 1),
    objects=st.integers(1, 6),
    points=st.integers(0, 400),
    radius=st.sampled_from([5.0, 50.0, 100.0, 300.0]),
    min_s=st.sampled_from([0.0, 60.0, 300.0, 1200.0]),
    still=st.floats(0.0, 1.0),
)
def test_stay_points_are_the_one_at_a_time_search(
    seed: int, objects: int, points: int, radius: float, min_s: float, still: float
) -> None:
    """Tracks that dwell (steps well inside the radius, and some near twice it) and move (steps of
    up to ten radii), with repeated times and points: the same stays as the plain search."""
    rng = np.random.default_rng(seed)
    group = np.sort(rng.integers(0, objects, points)).astype(np.int64)
    deg = radius / 111_000
    step = np.where(
        rng.random(points) < still,
        rng.choice([0.0, 0.3, 0.9, 2.0], points) * deg * rng.uniform(0.5, 1.0, points),
        rng.uniform(0, 10, points) * deg,
    )
    angle = rng.uniform(0, 2 * math.pi, points)
    x = 116.4 + np.cumsum(step * np.cos(angle))
    y = 39.9 + np.cumsum(step * np.sin(angle))
    t = np.cumsum(rng.choice([0, 1, 30, 60, 600], points)).astype(np.int64) * 1_000_000
    first, stop = stay_points(group, t, x, y, radius, min_s)
    want = stays_one_by_one(group, t, x, y, radius, min_s)
    assert list(zip(first.tolist(), stop.tolist(), strict=True)) == want


# -- B1, B2, B4, B6 on the random world ------------------------------------------------------------

region_x = st.floats(REGION[0] - 0.05, REGION[2] + 0.05)
region_y = st.floats(REGION[1] - 0.05, REGION[3] + 0.05)


@LAKE
@given(x=region_x, y=region_y, w=st.floats(0, 0.3), h=st.floats(0, 0.3))
def test_bbox_is_the_numpy_mask(world: World, x: float, y: float, w: float, h: float) -> None:
    df = world.pings
    box = (x, y, x + w, y + h)
    want = df.rid[(df.lon >= box[0]) & (df.lon <= box[2]) & (df.lat >= box[1]) & (df.lat <= box[3])]
    assert rids(world.q.bbox("pings", box)) == sorted(want)


@LAKE
@given(
    x=region_x,
    y=region_y,
    w=st.floats(0.001, 0.3),
    h=st.floats(0.001, 0.3),
    t0=st.integers(0, 60 * 60),
    span=st.integers(1, 60 * 60),
)
def test_range_is_the_numpy_mask(
    world: World, x: float, y: float, w: float, h: float, t0: int, span: int
) -> None:
    df = world.pings
    box = (x, y, x + w, y + h)
    start = T0 + timedelta(minutes=t0)
    end = start + timedelta(minutes=span)
    inside = (df.lon >= box[0]) & (df.lon <= box[2]) & (df.lat >= box[1]) & (df.lat <= box[3])
    want = df.rid[inside & (df.t >= start) & (df.t < end)]
    assert rids(world.q.range("pings", box, start, end)) == sorted(want)


@LAKE
@given(
    x=region_x,
    y=region_y,
    k=st.integers(1, 60),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 48 * 60), st.integers(1, 12 * 60))),
)
def test_nearest_is_the_k_smallest_distances(
    world: World, x: float, y: float, k: int, window: tuple[int, int] | None
) -> None:
    df = world.pings
    if window is None:
        got = world.q.nearest("pings", x, y, k)
        sel = df
    else:
        start = T0 + timedelta(minutes=window[0])
        end = start + timedelta(minutes=window[1])
        got = world.q.nearest("pings", x, y, k, start, end)
        sel = df[(df.t >= start) & (df.t < end)]
    d = np.sort(hav(x, y, sel.lon.to_numpy(), sel.lat.to_numpy()))[:k]
    assert np.allclose(got.column("distance_m").to_numpy(), d, rtol=1e-9, atol=1e-6)


_CELLS: dict[int, list[str]] = {}


@cache
def _parents(world_id: int, res: int) -> list[str]:
    parent = {c: h3.cell_to_parent(c, res) for c in set(_CELLS[world_id])}
    return [parent[c] for c in _CELLS[world_id]]


@settings(LAKE, max_examples=12)
@given(res=st.integers(0, 12), every=st.sampled_from([None, "1h", "1d"]))
def test_h3_bins_are_h3_package_counts(world: World, res: int, every: str | None) -> None:
    df = world.pings
    if id(world) not in _CELLS:
        _CELLS[id(world)] = [h3.latlng_to_cell(b, a, 12) for a, b in zip(df.lon, df.lat, strict=True)]
    ref = pd.DataFrame({"cell": _parents(id(world), res)})
    keys = ["cell"]
    if every is not None:
        ref["bucket"] = bucket(df.t, {"1h": np.timedelta64(1, "h"), "1d": np.timedelta64(1, "D")}[every])
        keys.append("bucket")
    want = ref.groupby(keys).size().rename("count").reset_index()
    got = world.q.h3_bins("pings", res, every=every).to_pandas()
    assert len(got) == len(want)
    m = got.merge(want, on=keys, suffixes=("", "_ref"))
    assert len(m) == len(want) and (m["count"] == m["count_ref"]).all()
