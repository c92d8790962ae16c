"""Which area of a layer each point falls in, for millions of points without a per-row loop.

A uniform grid covers the layer. Each grid cell is classified once, at build time: inside exactly
one area (most cells, for districts and grids), outside every area, or crossed by an area's boundary.
A point in a decided cell gets its answer from one array lookup; only points in boundary cells are
tested exactly, with shapely's vectorised `intersects_xy` against the few areas that cross the cell.
This is the grid-with-edge-lists idea FACTS.md measured as the fastest, in numpy and shapely.

Semantics, shared with the brute-force reference in the tests: a point belongs to the first area
(lowest index) that intersects it, boundary included; none gives -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

NONE = -1
# Cap on grid cells: build time grows with cells x areas. On 300 districts, 4M cells built in 2.6 s
# and looked up 12.6 M points/s; 1M cells build in 0.7 s at 7-9 M/s, which wins below ~20M points.
_MAX_CELLS = 1_000_000
# Offsets of a cell and its 8 neighbours: a segment between two boundary vertices at most half a
# cell apart can only pass through the cells of those vertices and their neighbours.
_NEIGHBOURS = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)], dtype=np.int64)


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygonal part of a (possibly invalid) geometry.

    Real outlines are often invalid; `make_valid` then returns collections with stray lines
    (FACTS.md: 11 of the 16 Beijing districts), which must not take part in containment.
    """
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    g = geom if geom.is_valid else shapely.make_valid(geom)
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.Polygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


class AreaIndex:
    """Point-in-area lookup for one layer of polygons.

    >>> from shapely import box
    >>> idx = AreaIndex([box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> idx.lookup(np.array([0.5, 1.5, 5.0]), np.array([0.5, 0.5, 5.0])).tolist()
    [0, 1, -1]
    """

    def __init__(self, geoms: Sequence[BaseGeometry] | npt.NDArray[np.object_], cell: float | None = None):
        self.geoms = np.array([polygonal(g) for g in geoms], dtype=object)
        shapely.prepare(self.geoms)
        n = len(self.geoms)
        bounds = shapely.bounds(self.geoms).reshape(n, 4) if n else np.zeros((0, 4))
        ok = np.asarray(np.isfinite(bounds).all(axis=1), dtype=bool)
        if not ok.any():
            self.x0 = self.y0 = 0.0
            self.cell = 1.0
            self.nx = self.ny = 1
            self._cells = np.full(1, NONE, dtype=np.int64)
            self._cand_start = np.zeros(1, dtype=np.int64)
            self._cand = np.zeros(0, dtype=np.int64)
            return
        b = bounds[ok]
        self.x0, self.y0 = float(b[:, 0].min()), float(b[:, 1].min())
        x1, y1 = float(b[:, 2].max()), float(b[:, 3].max())
        w, h = max(x1 - self.x0, 1e-9), max(y1 - self.y0, 1e-9)
        if cell is None:
            sizes = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            # Measured on the Beijing districts: 1/16 of an area's size gives 1.7 M points/s,
            # 1/64 6.3 M/s, 1/256 9.5 M/s (most points then land in decided cells).
            cell = float(np.median(sizes)) / 256.0
            cell = max(cell, float(np.sqrt(w * h / _MAX_CELLS)), 1e-9)
        self.cell = float(cell)
        self.nx = int(np.floor(w / self.cell)) + 1
        self.ny = int(np.floor(h / self.cell)) + 1
        self._build(bounds, ok)

    # -- build --------------------------------------------------------------------------------

    def _cell_xy(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        ix = np.floor((x - self.x0) / self.cell).astype(np.int64)
        iy = np.floor((y - self.y0) / self.cell).astype(np.int64)
        return ix, iy

    def _build(self, bounds: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> None:
        n = len(self.geoms)
        ncells = self.nx * self.ny
        poly_ids = np.nonzero(ok)[0]

        # 1. Cells that each area's boundary may cross (vertices densified to half a cell, dilated).
        rings = shapely.segmentize(shapely.boundary(self.geoms[poly_ids]), self.cell / 2.0)
        coords, which = shapely.get_coordinates(rings, return_index=True)
        ix, iy = self._cell_xy(coords[:, 0], coords[:, 1])
        owner = poly_ids[which]
        ix = (ix[:, None] + _NEIGHBOURS[:, 0]).ravel()
        iy = (iy[:, None] + _NEIGHBOURS[:, 1]).ravel()
        owner = np.repeat(owner, len(_NEIGHBOURS))
        keep = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        edge_key = np.unique((iy[keep] * self.nx + ix[keep]) * n + owner[keep])

        # 2. Every cell of each area's bounding box, less the boundary cells: wholly in or out.
        bx0, by0 = self._cell_xy(bounds[poly_ids, 0], bounds[poly_ids, 1])
        bx1, by1 = self._cell_xy(bounds[poly_ids, 2], bounds[poly_ids, 3])
        bx0, by0 = np.clip(bx0, 0, self.nx - 1), np.clip(by0, 0, self.ny - 1)
        bx1, by1 = np.clip(bx1, 0, self.nx - 1), np.clip(by1, 0, self.ny - 1)
        wx, wy = bx1 - bx0 + 1, by1 - by0 + 1
        counts = wx * wy
        pid = np.repeat(poly_ids, counts)
        k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rwx = np.repeat(wx, counts)
        cx = np.repeat(bx0, counts) + k % rwx
        cy = np.repeat(by0, counts) + k // rwx
        key = (cy * self.nx + cx) * n + pid
        inner = ~np.isin(key, edge_key, assume_unique=False)
        key, pid, cx, cy = key[inner], pid[inner], cx[inner], cy[inner]
        centre_x = self.x0 + (cx + 0.5) * self.cell
        centre_y = self.y0 + (cy + 0.5) * self.cell
        inside = shapely.intersects_xy(self.geoms[pid], centre_x, centre_y)
        inside_key = key[inside]

        # 3. A cell with one area wholly around it and nothing else is decided; any other cell
        # that some area reaches keeps its candidate areas, in index order, for the exact test.
        all_key = np.concatenate([edge_key, inside_key])
        is_edge = np.concatenate([np.ones(len(edge_key), bool), np.zeros(len(inside_key), bool)])
        order = np.argsort(all_key, kind="stable")
        all_key, is_edge = all_key[order], is_edge[order]
        cell_of, poly_of = all_key // n, all_key % n
        cells_u, first, per_cell = np.unique(cell_of, return_index=True, return_counts=True)
        decided = (per_cell == 1) & ~is_edge[first]
        table = np.full(ncells, NONE, dtype=np.int64)
        table[cells_u[decided]] = poly_of[first[decided]]
        amb_cells = cells_u[~decided]
        # Ambiguous cells are coded -(slot + 2) and point into a CSR list of candidates.
        table[amb_cells] = -(np.arange(len(amb_cells)) + 2)
        amb_mask = np.isin(cell_of, amb_cells)
        cand = poly_of[amb_mask]  # already grouped by cell, polygons ascending within a cell
        amb_counts = per_cell[~decided]
        self._cand_start = np.concatenate([[0], np.cumsum(amb_counts)]).astype(np.int64)
        self._cand = cand.astype(np.int64)
        self._cells = table

    # -- lookup -------------------------------------------------------------------------------

    def lookup(self, x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Index of the area each (x, y) falls in, or -1."""
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
        out = np.full(len(xa), NONE, dtype=np.int64)
        ix, iy = self._cell_xy(xa, ya)
        valid = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        vi = np.nonzero(valid)[0]
        code = self._cells[iy[vi] * self.nx + ix[vi]]
        out[vi] = np.where(code >= 0, code, NONE)
        amb = code <= -2
        if amb.any():
            pts = vi[amb]
            slot = -code[amb] - 2
            start, stop = self._cand_start[slot], self._cand_start[slot + 1]
            reps = stop - start
            rep_pt = np.repeat(pts, reps)
            offs = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
            cand = self._cand[np.repeat(start, reps) + offs]
            hit = shapely.intersects_xy(self.geoms[cand], xa[rep_pt], ya[rep_pt])
            hp, hc = rep_pt[hit], cand[hit]
            # Candidates are in ascending area order per point: the first hit is the lowest index.
            first_pt, first_i = np.unique(hp, return_index=True)
            out[first_pt] = hc[first_i]
        return out

    def __len__(self) -> int:
        return len(self.geoms)
