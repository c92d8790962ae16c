"""The road network: a perturbed grid of arterials with local streets between them.

Nodes are intersections, edges are straight segments between them, so positions along an edge are
linear interpolations (exact on the written lines, see frame.py). Arterials stay straight between
their coarse intersections; local-street intersections are jittered and some local segments are
dropped, which gives dead ends and irregular blocks. Only the largest connected piece is kept, so
a vehicle can drive from anywhere to anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon

from citybase.sim.rand import F64, I64, Bool, stream
from citybase.sim.vocab import STR, Str, vocab, words

ARTERIAL_HALF_WIDTH_M = 15.0
LOCAL_HALF_WIDTH_M = 5.0


@dataclass(frozen=True)
class RoadNetwork:
    """Intersections (metres), segments, and a CSR adjacency for walking the graph."""

    xy: F64  # (N, 2)
    edges: I64  # (E, 2) node indices
    arterial: Bool  # (E,)
    line: I64  # (E,) index into `line_names`: the named road the segment belongs to
    line_pos: F64  # (E,) position of the segment's start along its named road, metres
    line_names: Str  # (L,)
    adj_ptr: I64  # (N + 1,) CSR offsets
    adj_node: I64  # neighbour node
    adj_edge: I64  # edge to that neighbour

    @property
    def length(self) -> F64:
        d = self.xy[self.edges[:, 1]] - self.xy[self.edges[:, 0]]
        out: F64 = np.hypot(d[:, 0], d[:, 1])
        return out

    @property
    def half_width(self) -> F64:
        out: F64 = np.where(self.arterial, ARTERIAL_HALF_WIDTH_M, LOCAL_HALF_WIDTH_M)
        return out

    @property
    def speed_limit_kmh(self) -> I64:
        out: I64 = np.where(self.arterial, 60, 30).astype(np.int64)
        return out

    def lines(self) -> NDArray[np.object_]:
        """One shapely LineString per segment (metres)."""
        out: NDArray[np.object_] = shapely.linestrings(self.xy[self.edges])
        return out

    def frame(self) -> gpd.GeoDataFrame:
        """The segments as a table (metres), in the form written to roads.parquet."""
        n = len(self.edges)
        return gpd.GeoDataFrame(
            {
                "road_id": np.strings.add("R", np.strings.zfill(np.arange(1, n + 1).astype(STR), 6)),
                "name": self.line_names[self.line],
                "road_class": np.where(self.arterial, "arterial", "local").astype(STR),
                "lanes": np.where(self.arterial, 6, 2).astype(np.int64),
                "speed_limit": self.speed_limit_kmh,
                "length_m": np.round(self.length, 2),
                "from_node": self.edges[:, 0],
                "to_node": self.edges[:, 1],
            },
            geometry=self.lines(),
        )


def _components(n: int, edges: I64) -> I64:
    """Connected-component label (smallest node index) per node: min-label propagation with jumps."""
    lab = np.arange(n, dtype=np.int64)
    while True:
        m = np.minimum(lab[edges[:, 0]], lab[edges[:, 1]])
        new = lab.copy()
        np.minimum.at(new, edges[:, 0], m)
        np.minimum.at(new, edges[:, 1], m)
        new = new[new]
        if np.array_equal(new, lab):
            return lab
        lab = new


def build_roads(boundary: Polygon, spacing_m: float, local_per_block: int, seed: int) -> RoadNetwork:
    rng = stream(seed, "roads")
    k = local_per_block + 1  # fine steps per arterial block
    minx, miny, maxx, maxy = boundary.bounds
    nx = int(np.ceil((maxx - minx) / spacing_m)) + 1
    ny = int(np.ceil((maxy - miny) / spacing_m)) + 1
    # Coarse (arterial) intersections on a jittered lattice centred on the city.
    gx = (np.arange(nx) - (nx - 1) / 2) * spacing_m
    gy = (np.arange(ny) - (ny - 1) / 2) * spacing_m
    cx, cy = np.meshgrid(gx, gy, indexing="ij")
    jitter = rng.normal(0, 0.12 * spacing_m, (2, nx, ny))
    cx, cy = cx + jitter[0], cy + jitter[1]
    # Fine intersections by bilinear interpolation inside each coarse cell.
    fi = np.arange((nx - 1) * k + 1)
    fj = np.arange((ny - 1) * k + 1)
    ii, jj = np.meshgrid(fi, fj, indexing="ij")
    ci, cj = np.minimum(ii // k, nx - 2), np.minimum(jj // k, ny - 2)
    u, v = (ii - ci * k) / k, (jj - cj * k) / k

    def bilerp(c: F64) -> F64:
        out: F64 = (
            c[ci, cj] * (1 - u) * (1 - v)
            + c[ci + 1, cj] * u * (1 - v)
            + c[ci, cj + 1] * (1 - u) * v
            + c[ci + 1, cj + 1] * u * v
        )
        return out

    fx, fy = bilerp(cx), bilerp(cy)
    interior = (ii % k != 0) & (jj % k != 0)
    step = spacing_m / k
    fx = fx + np.where(interior, rng.normal(0, 0.07 * step, fx.shape), 0.0)
    fy = fy + np.where(interior, rng.normal(0, 0.07 * step, fy.shape), 0.0)
    NI, NJ = len(fi), len(fj)
    node = (ii * NJ + jj).ravel()  # node id = I * NJ + J
    xy = np.column_stack([fx.ravel(), fy.ravel()])[np.argsort(node)]
    # Segments: east-west along row J (line J), north-south along column I (line NJ + I).
    ew_i, ew_j = (a.ravel() for a in np.meshgrid(np.arange(NI - 1), np.arange(NJ), indexing="ij"))
    ns_i, ns_j = (a.ravel() for a in np.meshgrid(np.arange(NI), np.arange(NJ - 1), indexing="ij"))
    edges = np.concatenate(
        [
            np.column_stack([ew_i * NJ + ew_j, (ew_i + 1) * NJ + ew_j]),
            np.column_stack([ns_i * NJ + ns_j, ns_i * NJ + ns_j + 1]),
        ]
    ).astype(np.int64)
    arterial = np.concatenate([ew_j % k == 0, ns_i % k == 0])
    line = np.concatenate([ew_j, NJ + ns_i]).astype(np.int64)
    line_pos = np.concatenate([ew_i * step, ns_j * step]).astype(np.float64)
    # Keep segments inside the city; drop some local ones for dead ends and irregular blocks.
    shapely.prepare(boundary)
    inside = shapely.contains_xy(boundary, xy[:, 0], xy[:, 1])
    keep = inside[edges[:, 0]] & inside[edges[:, 1]] & (arterial | (rng.random(len(edges)) > 0.12))
    keep[keep] = shapely.within(shapely.linestrings(xy[edges[keep]]), boundary)
    edges, arterial, line, line_pos = edges[keep], arterial[keep], line[keep], line_pos[keep]
    # Largest connected piece only, nodes renumbered densely.
    lab = _components(len(xy), edges)
    sizes = np.bincount(lab[edges[:, 0]], minlength=len(xy))
    main = lab[edges[:, 0]] == int(np.argmax(sizes))
    edges, arterial, line, line_pos = edges[main], arterial[main], line[main], line_pos[main]
    used = np.unique(edges)
    remap = np.full(len(xy), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    edges, xy = remap[edges], xy[used]
    # Names: one per line that survived, arterials and locals with their own endings.
    lines_used, line = np.unique(line, return_inverse=True)
    is_ew = lines_used < NJ
    line_art = np.where(is_ew, lines_used % k == 0, (lines_used - NJ) % k == 0)
    suffix = vocab().raw["road_suffix"]
    ends = np.where(
        line_art,
        np.where(
            is_ew,
            np.array(suffix["arterial_ew"], dtype=STR)[rng.integers(0, 4, len(lines_used))],
            np.array(suffix["arterial_ns"], dtype=STR)[rng.integers(0, 4, len(lines_used))],
        ),
        np.array(suffix["local"], dtype=STR)[rng.integers(0, 5, len(lines_used))],
    )
    names = np.strings.add(words(rng, len(lines_used)), ends)
    return _with_adjacency(xy, edges, arterial, line.astype(np.int64), line_pos, names)


def _with_adjacency(xy: F64, edges: I64, arterial: Bool, line: I64, line_pos: F64, names: Str) -> RoadNetwork:
    e = np.arange(len(edges), dtype=np.int64)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    eid = np.concatenate([e, e])
    order = np.argsort(src, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=len(xy)))]).astype(np.int64)
    return RoadNetwork(xy, edges, arterial, line, line_pos, names, ptr, dst[order], eid[order])
