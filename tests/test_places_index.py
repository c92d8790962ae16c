"""The place index against brute force: every point, every layer shape, real outlines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from citybase.places.index import AreaIndex, polygonal


def brute(geoms: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.full(len(x), -1)
    for i in range(len(geoms) - 1, -1, -1):  # last write wins: the lowest index
        out[shapely.intersects_xy(geoms[i], x, y)] = i
    return out


def test_beijing_districts_match_brute_force(shared: Path) -> None:
    import geopandas as gpd

    g = gpd.read_file(shared / "geometries/china_admin/beijing_districts.geojson")
    assert len(g) == 16
    idx = AreaIndex(list(g.geometry))
    rng = np.random.default_rng(7)
    b = g.total_bounds
    x, y = rng.uniform(b[0], b[2], 200_000), rng.uniform(b[1], b[3], 200_000)
    got = idx.lookup(x, y)
    assert np.array_equal(got, brute(idx.geoms, x, y))
    assert 0.3 < (got >= 0).mean() < 0.9  # the outlines cover part of their bounding box
    # Points on the districts' own vertices: boundaries are where grids go wrong.
    vx, vy = shapely.get_coordinates(idx.geoms).T
    assert np.array_equal(idx.lookup(vx, vy), brute(idx.geoms, vx, vy))


def test_invalid_outline_keeps_polygonal_part() -> None:
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    assert not bowtie.is_valid
    p = polygonal(bowtie)
    assert p.geom_type in ("Polygon", "MultiPolygon") and p.area > 1.9


def test_overlaps_holes_and_outside() -> None:
    outer = shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(4, 4), (6, 4), (6, 6), (4, 6)]])
    inner = shapely.box(5, 5, 7, 7)
    geoms = [outer, inner]
    idx = AreaIndex(geoms)
    pts = np.array([[5, 5.5], [4.5, 4.5], [6.5, 6.5], [1, 1], [20, 20], [10, 10]], dtype=float)
    assert idx.lookup(pts[:, 0], pts[:, 1]).tolist() == [1, -1, 0, 0, -1, 0]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_areas=st.integers(1, 30),
    cell=st.sampled_from([None, 0.05, 0.3, 2.0]),
)
def test_random_layers_match_brute_force(seed: int, n_areas: int, cell: float | None) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10, (n_areas, 2))
    radii = rng.uniform(0.1, 3, n_areas)
    geoms = np.array(
        [
            shapely.Point(c).buffer(r, quad_segs=rng.integers(1, 8))
            for c, r in zip(centres, radii, strict=True)
        ]
    )
    idx = AreaIndex(geoms, cell=cell)
    x, y = rng.uniform(-1, 11, 5_000), rng.uniform(-1, 11, 5_000)
    assert np.array_equal(idx.lookup(x, y), brute(idx.geoms, x, y))


def test_empty_layer() -> None:
    idx = AreaIndex([])
    assert idx.lookup(np.array([1.0]), np.array([1.0])).tolist() == [-1]
