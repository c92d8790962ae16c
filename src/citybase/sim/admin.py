"""The administrative hierarchy (district > street > community) and the management grid.

Each level tiles the one above: a parent polygon is cut into Voronoi cells of seeded points, clipped
to the parent, so children cover their parent with no gaps or overlaps (up to floating point), and
every child lies inside its parent. Codes follow the national division code scheme: 6-digit
districts (110101...), 9-digit streets (district + 3), 12-digit communities (street + 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon

from citybase.sim.frame import BEIJING, CityFrame, city_boundary, sample_in
from citybase.sim.rand import I64, Geoms, stream
from citybase.sim.vocab import STR, Str, words


def _polygonal(geoms: Geoms) -> Geoms:
    """Keep only the polygon parts where a clip returned a collection with stray lines or points."""
    out = geoms.copy()
    mixed = np.flatnonzero(shapely.get_type_id(geoms) == 7)
    for i in mixed:  # rare: only cells touching a parent's corner
        parts = shapely.get_parts(geoms[i])
        polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(polys)
    return out


def partition(
    parent: shapely.Geometry, n: int, rng: np.random.Generator, frame: CityFrame | None = None
) -> Geoms:
    """Cut `parent` into `n` cells (metres), ordered from the centre of the city outwards.

    One Lloyd step evens out the cells while keeping some of the centre weighting, so central
    districts stay smaller, as in real cities.
    """
    if n == 1:
        return np.array([parent], dtype=object)
    pts = sample_in(parent, n, rng, frame)
    cells: Geoms = np.empty(0, dtype=object)
    for _ in range(2):  # seed cells, then one Lloyd step
        diagram = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=parent, ordered=True)
        cells = _polygonal(shapely.intersection(shapely.get_parts(diagram), parent))
        cx = shapely.get_x(shapely.centroid(cells))
        cy = shapely.get_y(shapely.centroid(cells))
        inside = shapely.contains_xy(parent, cx, cy)
        rep = shapely.point_on_surface(cells)
        pts = np.column_stack(
            [np.where(inside, cx, shapely.get_x(rep)), np.where(inside, cy, shapely.get_y(rep))]
        )
    order = np.argsort(np.hypot(pts[:, 0], pts[:, 1]), kind="stable")
    out: Geoms = cells[order]
    return out


def district_codes(n: int) -> Str:
    """110101, 110102, ... rolling over to 110201 after 99, like a second prefecture."""
    i = np.arange(n, dtype=np.int64)
    out: Str = (110000 + (i // 99 + 1) * 100 + i % 99 + 1).astype(STR)
    return out


def _child_codes(parent: Str, counts: I64) -> Str:
    idx = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.strings.add(np.repeat(parent, counts), np.strings.zfill((idx + 1).astype(STR), 3))


@dataclass(frozen=True)
class Admin:
    """The three administrative layers, in metres; `district_short` is the name without 区."""

    districts: gpd.GeoDataFrame
    streets: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    district_short: Str


def _subdivide(parents: Geoms, k: int, rng: np.random.Generator) -> tuple[Geoms, I64]:
    parts = [partition(p, k, rng) for p in parents]  # one Voronoi per parent polygon, not per point
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    return np.concatenate(parts), counts


def build_admin(
    boundary: Polygon, n_districts: int, streets: int, communities: int, seed: int, frame: CityFrame
) -> Admin:
    rng = stream(seed, "admin")
    d_geom = partition(boundary, n_districts, rng, frame)
    d_code = district_codes(len(d_geom))
    d_word = words(rng, len(d_geom))
    districts = gpd.GeoDataFrame(
        {"code": d_code, "name": np.strings.add(d_word, "区")}, geometry=d_geom, crs=None
    )
    s_geom, s_counts = _subdivide(d_geom, streets, rng)
    s_code = _child_codes(d_code, s_counts)
    streets_df = gpd.GeoDataFrame(
        {
            "code": s_code,
            "name": np.strings.add(words(rng, len(s_geom)), "街道"),
            "parent_code": np.repeat(d_code, s_counts),
        },
        geometry=s_geom,
    )
    c_geom, c_counts = _subdivide(s_geom, communities, rng)
    comm = gpd.GeoDataFrame(
        {
            "code": _child_codes(s_code, c_counts),
            "name": np.strings.add(words(rng, len(c_geom)), "社区"),
            "parent_code": np.repeat(s_code, c_counts),
        },
        geometry=c_geom,
    )
    return Admin(districts, streets_df, comm, d_word)


def grid_cells(boundary: Polygon, cell_m: float) -> gpd.GeoDataFrame:
    """The management grid: `cell_m` squares clipped to the city, coded G<row>-<col> from the NW."""
    minx, miny, maxx, maxy = boundary.bounds
    c0, c1 = int(np.floor(minx / cell_m)), int(np.ceil(maxx / cell_m))
    r0, r1 = int(np.floor(miny / cell_m)), int(np.ceil(maxy / cell_m))
    cx, cy = (a.ravel() for a in np.meshgrid(np.arange(c0, c1), np.arange(r0, r1)))
    boxes = shapely.box(cx * cell_m, cy * cell_m, (cx + 1) * cell_m, (cy + 1) * cell_m)
    shapely.prepare(boundary)
    hit = shapely.intersects(boundary, boxes)
    clipped = _polygonal(shapely.intersection(boxes[hit], boundary))
    keep = shapely.area(clipped) > 1.0
    row = (r1 - 1 - cy[hit])[keep]  # row 0 is the northernmost
    col = (cx[hit] - c0)[keep]
    code = np.strings.add(
        np.strings.add(np.strings.add("G", np.strings.zfill(row.astype(STR), 4)), "-"),
        np.strings.zfill(col.astype(STR), 4),
    )
    order = np.lexsort((col, row))
    return gpd.GeoDataFrame({"code": code[order]}, geometry=clipped[keep][order])


def districts(n: int, seed: int = 42, frame: CityFrame = BEIJING) -> gpd.GeoDataFrame:
    """`n` district polygons (code, name, geometry in EPSG:4326) tiling the city: for benchmarks.

    >>> d = districts(20, seed=1)
    >>> len(d), d.crs.to_epsg()
    (20, 4326)
    """
    boundary = city_boundary(frame, seed)
    rng = stream(seed, "admin")
    geom = partition(boundary, n, rng, frame)
    names = np.strings.add(words(rng, len(geom)), "区")
    return gpd.GeoDataFrame(
        {"code": district_codes(len(geom)).astype(object), "name": names.astype(object)},
        geometry=frame.geoms_to_lonlat(geom),
        crs="EPSG:4326",
    )


__all__ = ["Admin", "build_admin", "district_codes", "districts", "grid_cells", "partition"]
