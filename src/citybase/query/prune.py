"""Predicates that let DuckDB skip data: the box around a circle, and H3 ranges around a box.

Rows are stored sorted by their H3 cell (store/lake.py), so each Parquet row group holds one
narrow range of cell ids, and its min/max statistics on `h3` are tight. A cell at a coarse
resolution owns one contiguous range of ids at the stored resolution (its descendants), so an area
covered by a few coarse cells becomes a few `h3 BETWEEN lo AND hi` predicates, which DuckDB checks
against those statistics to skip row groups, while the exact test (lon/lat in the box, in the
polygon, within the distance) runs on what is left. Statistics on lon/lat prune far less: a run of
cells sorted by id can jump across the city, so a row group's lon/lat box is wide.

These predicates only ever narrow what is read to a superset of the answer. H3 is not exactly
nested: a fine cell's ancestor (by id) may be the coarse cell next to the one the point lies in,
as children overhang their parent's outline (measured: by up to 0.53 of an average edge length).
So the cover is computed on the area grown by 1.5 edge lengths (more towards the poles, where a
degree of longitude shrinks): every stored point of the area has its ancestor in the cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h3
import shapely
from shapely.geometry.base import BaseGeometry

from citybase.query._sql import EARTH_RADIUS_M

BBox = tuple[float, float, float, float]

#: The coarsest cover resolution worth a predicate: coarser cells hold most of a city each.
MIN_COVER_RES = 3
#: Target number of cells in a cover: enough to follow the area, few enough to compute in < 1 ms.
COVER_CELLS = 24
#: At most this many `h3 BETWEEN` branches (each one more scan; measured: one envelope is fastest).
MAX_BRANCHES = 1


def circle_bbox(lon: float, lat: float, radius_m: float) -> BBox:
    """The lon/lat box that holds every point within `radius_m` (great circle) of (lon, lat).

    >>> [round(v, 4) for v in circle_bbox(116.4, 39.9, 1000)]
    [116.3883, 39.891, 116.4117, 39.909]
    """
    d = radius_m / EARTH_RADIUS_M * (1 + 1e-9) + 1e-12
    if d >= math.pi:
        return (-180.0, -90.0, 180.0, 90.0)
    dlat = math.degrees(d)
    y0, y1 = lat - dlat, lat + dlat
    if y0 <= -90 or y1 >= 90:
        # The circle holds a pole: every longitude.
        return (-180.0, max(y0, -90.0), 180.0, min(y1, 90.0))
    # The widest longitude of a spherical cap (not at its centre's latitude): asin(sin d / cos lat).
    dlon = math.degrees(math.asin(min(1.0, math.sin(d) / math.cos(math.radians(lat)))))
    x0, x1 = lon - dlon, lon + dlon
    if x0 < -180 or x1 > 180:
        return (-180.0, y0, 180.0, y1)
    return (x0, y0, x1, y1)


@dataclass(frozen=True, order=True)
class CellRange:
    """Ids of the stored-resolution cells under one or more cover cells: `lo <= h3 <= hi`."""

    lo: int
    hi: int

    def sql(self, column: str = '"h3"') -> str:
        return f"{column} BETWEEN {self.lo} AND {self.hi}"


def descendant_range(cell: int, stored_res: int) -> CellRange:
    """The id range of a cell's descendants at `stored_res` (the cell itself when equal).

    An H3 id holds the resolution in bits 52-55 and one 3-bit digit per resolution below it,
    digit r at bits 3*(15-r); digits finer than the cell's resolution are 7. Descendants keep the
    digits down to the cell's resolution and take 0..6 below it, so they lie between the id with
    those digits all 0 and the id with them all 6.

    >>> c = h3.str_to_int(h3.latlng_to_cell(39.9, 116.4, 9))
    >>> r = descendant_range(c, 12)
    >>> kids = [h3.str_to_int(k) for k in h3.cell_to_children(h3.int_to_str(c), 12)]
    >>> r.lo <= min(kids) and max(kids) <= r.hi
    True
    """
    res = (cell >> 52) & 0xF
    if stored_res < res:
        raise ValueError(f"cell resolution {res} is finer than the stored resolution {stored_res}")
    unused = (1 << (3 * (15 - stored_res))) - 1  # digits below the stored resolution: all 7
    base = (cell & ~((0xF << 52) | ((1 << (3 * (15 - res))) - 1))) | (stored_res << 52) | unused
    hi = base
    for r in range(res + 1, stored_res + 1):
        hi |= 6 << (3 * (15 - r))
    return CellRange(base, hi)


def _margin(res: int, lat_max: float) -> float:
    """Degrees to grow an area by at `res`, past the overhang of descendants (module docstring)."""
    stretch = 1 / math.cos(math.radians(min(abs(lat_max), 89.0)))
    return 1.5 * float(h3.average_hexagon_edge_length(res, "km")) / 111.0 * stretch


def _cover_res(bounds: BBox, stored_res: int) -> int:
    """The finest resolution whose cells, over the grown box, number about COVER_CELLS at most."""
    x0, y0, x1, y1 = bounds
    lat_max = max(abs(y0), abs(y1))
    cos_mid = math.cos(math.radians((y0 + y1) / 2))
    res = stored_res
    while res > 0:
        m = _margin(res, lat_max)
        area_km2 = (x1 - x0 + 2 * m) * 111.32 * cos_mid * (y1 - y0 + 2 * m) * 110.57
        if area_km2 / h3.average_hexagon_area(res, "km^2") <= COVER_CELLS:
            break
        res -= 1
    return res


def _h3_shape(geom: BaseGeometry) -> h3.H3Shape:
    def poly(p: shapely.Polygon) -> h3.LatLngPoly:
        ring = [(y, x) for x, y in p.exterior.coords[:-1]]
        holes = [[(y, x) for x, y in r.coords[:-1]] for r in p.interiors]
        return h3.LatLngPoly(ring, *holes)

    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    return poly(parts[0]) if len(parts) == 1 else h3.LatLngMultiPoly(*[poly(p) for p in parts])


def cover_ranges(
    area: BaseGeometry | BBox, stored_res: int, max_branches: int = MAX_BRANCHES
) -> list[CellRange] | None:
    """Disjoint id ranges (at most `max_branches`) holding every stored cell that meets `area`.

    None when no useful cover exists (the area is too large, or crosses the antimeridian or a
    pole): the query then relies on lon/lat statistics alone.

    >>> rs = cover_ranges((116.30, 39.90, 116.31, 39.91), 12)
    >>> 1 <= len(rs) <= 2
    True
    """
    geom = shapely.box(*area) if isinstance(area, tuple) else area
    if geom.is_empty:
        return None
    x0, y0, x1, y1 = geom.bounds
    if x0 < -179 or x1 > 179 or y0 < -85 or y1 > 85:
        return None
    res = _cover_res((x0, y0, x1, y1), stored_res)
    if res < MIN_COVER_RES:
        return None
    # Grow the area past the largest overhang of descendants over their ancestor (module docstring).
    margin = _margin(res, max(abs(y0), abs(y1)))
    if isinstance(area, tuple):
        grown = shapely.box(x0 - margin, y0 - margin, x1 + margin, y1 + margin)
    else:
        grown = shapely.simplify(shapely.buffer(geom, margin, quad_segs=2), margin / 4)
    gx0, gy0, gx1, gy1 = grown.bounds
    if gx0 < -180 or gx1 > 180 or gy0 < -90 or gy1 > 90:
        return None
    try:
        cells = h3.h3shape_to_cells_experimental(_h3_shape(grown), res, contain="overlap")
    except (h3.H3BaseException, ValueError):
        return None
    if not cells:
        return None
    ranges = sorted(descendant_range(h3.str_to_int(c), stored_res) for c in cells)
    return merge_ranges(ranges, max_branches)


def merge_ranges(ranges: list[CellRange], max_branches: int) -> list[CellRange]:
    """Merge sorted ranges whose gaps are small, then the smallest gaps until `max_branches` remain.

    A gap up to 8 range widths costs little to read through (siblings under one parent); a larger
    one may hold a whole district's rows, and is worth a separate branch.
    """
    merged: list[CellRange] = []
    for r in sorted(ranges, key=lambda c: c.lo):
        if merged:
            last = merged[-1]
            width = max(last.hi - last.lo, r.hi - r.lo) + 1
            if r.lo - last.hi <= 8 * width:
                merged[-1] = CellRange(last.lo, max(last.hi, r.hi))
                continue
        merged.append(r)
    while len(merged) > max(1, max_branches):
        gaps = [merged[i + 1].lo - merged[i].hi for i in range(len(merged) - 1)]
        i = gaps.index(min(gaps))
        merged[i : i + 2] = [CellRange(merged[i].lo, merged[i + 1].hi)]
    return merged
