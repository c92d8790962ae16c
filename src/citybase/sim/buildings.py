"""Buildings: small rectangles set back along the roads, facing them, inside the blocks.

Candidates sit in slots on both sides of every segment, turned to the segment's direction (so they
are rotated like the roads), set back beyond the roadway. A centre-weighted draw picks a few times
more candidates than wanted; those that come near any road, cross a community boundary, or come
near an already chosen building are dropped; the first `n` survivors remain. Each building gets a
house number along its road (odd on the left, even on the right), so its address is unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from citybase.sim.admin import Admin
from citybase.sim.frame import CityFrame, centre_weight
from citybase.sim.rand import F64, I64, Geoms, stream, weighted_choice
from citybase.sim.roads import ARTERIAL_HALF_WIDTH_M, RoadNetwork
from citybase.sim.variants import join
from citybase.sim.vocab import STR, Str, vocab, words

USES = ("residential", "office", "commercial", "industrial", "education", "health", "public")
# Probability of each use in the centre, the middle ring and the outskirts.
_USE_P = np.array(
    [
        [0.45, 0.22, 0.15, 0.00, 0.06, 0.05, 0.07],
        [0.64, 0.08, 0.10, 0.07, 0.05, 0.03, 0.03],
        [0.52, 0.02, 0.08, 0.29, 0.04, 0.02, 0.03],
    ]
)
# Width along the road and depth, metres (low, high), and floors (low, high) per use.
_WIDTH = np.array([[18, 60], [25, 45], [30, 70], [40, 90], [40, 70], [30, 60], [15, 30]], dtype=float)
_DEPTH = np.array([[12, 18], [20, 35], [20, 40], [25, 50], [20, 30], [20, 40], [12, 20]], dtype=float)
_FLOORS = np.array([[6, 30], [8, 40], [2, 6], [1, 3], [3, 5], [4, 12], [2, 6]])
_SLOT_M = 45.0
_CORNER_M = 25.0


@dataclass(frozen=True)
class Buildings:
    """The building layer (metres) plus what later parts of the city need to know about each."""

    frame: gpd.GeoDataFrame  # code, name, address, floors, height_m, use, year_built, parent_code
    centroid: F64  # (n, 2) metres
    use: I64  # index into USES
    district: I64  # index into the district table
    road: Str  # road name of the address
    number: I64  # house number on that road


def _candidates(roads: RoadNetwork) -> tuple[I64, I64, F64]:
    """Every slot: its segment, its side (+1 left, -1 right) and its distance along the segment."""
    length = roads.length
    slots = np.maximum(np.floor((length - 2 * _CORNER_M) / _SLOT_M), 0).astype(np.int64)
    counts = 2 * slots
    edge = np.repeat(np.arange(len(length)), counts)
    q = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    side = np.where(q % 2 == 0, 1, -1)
    pitch = (length[edge] - 2 * _CORNER_M) / slots[edge]
    along = _CORNER_M + (q // 2 + 0.5) * pitch
    return edge, side, along


def build_buildings(roads: RoadNetwork, admin: Admin, n: int, seed: int, frame: CityFrame) -> Buildings:
    rng = stream(seed, "buildings")
    c_edge, c_side, c_along = _candidates(roads)
    a = roads.xy[roads.edges[:, 0]]
    d = roads.xy[roads.edges[:, 1]] - a
    unit = d / roads.length[:, None]
    normal = np.column_stack([-unit[:, 1], unit[:, 0]])
    foot = a[c_edge] + unit[c_edge] * c_along[:, None]
    weight = centre_weight(foot[:, 0], foot[:, 1], frame, floor=0.05) ** 2
    order = weighted_choice(rng, weight, len(weight))  # every candidate, in draw order
    hx, hy = frame.half_extent
    lines = roads.lines()
    road_tree = shapely.STRtree(lines)
    comm = admin.communities
    comm_tree = shapely.STRtree(comm.geometry.values)
    m = min(len(order), 4 * n + 64)
    while True:
        sel = order[:m]
        e, s = c_edge[sel], c_side[sel]
        r = np.hypot(foot[sel, 0] / hx, foot[sel, 1] / hy)
        ring = np.digitize(r, [0.3, 0.6])
        use = np.argmax(rng.random(len(sel))[:, None] < np.cumsum(_USE_P[ring], axis=1), axis=1)
        w = rng.uniform(_WIDTH[use, 0], _WIDTH[use, 1])
        dep = rng.uniform(_DEPTH[use, 0], _DEPTH[use, 1])
        setback = roads.half_width[e] + rng.uniform(3.0, 10.0, len(sel)) + dep / 2
        centre = foot[sel] + normal[e] * (s * setback)[:, None]
        du, dn = unit[e] * (w / 2)[:, None], normal[e] * (dep / 2)[:, None]
        ring_xy = np.stack(
            [centre - du - dn, centre + du - dn, centre + du + dn, centre - du + dn, centre - du - dn], 1
        )
        rects = shapely.polygons(ring_xy)
        ok = np.ones(len(sel), dtype=bool)
        # not on any roadway (its own road is cleared by construction; crossing roads are not)
        ri, li = road_tree.query(rects, predicate="dwithin", distance=ARTERIAL_HALF_WIDTH_M + 1.0)
        near = shapely.distance(rects[ri], lines[li]) < roads.half_width[li] + 1.0
        ok[ri[near]] = False
        # wholly inside one community (hence inside the city)
        bi, ci = comm_tree.query(rects, predicate="within")
        community = np.full(len(sel), -1, dtype=np.int64)
        community[bi] = ci
        ok &= community >= 0
        # apart from every building drawn before it (3 m at least)
        idx = np.flatnonzero(ok)
        bi, bj = shapely.STRtree(rects[idx]).query(rects[idx], predicate="dwithin", distance=3.0)
        later = bj[bi < bj]
        ok[idx[np.unique(later)]] = False
        keep = np.flatnonzero(ok)[:n]
        if len(keep) >= n or m >= len(order):
            break
        m = min(len(order), 2 * m)
    if len(keep) < n:
        raise ValueError(
            f"the roads leave room for only {len(keep)} of {n} buildings: ask for fewer buildings, "
            "or more road (local_streets_per_block, arterial_spacing_m)"
        )
    sel, use, rects, community = sel[keep], use[keep], rects[keep], community[keep]
    e, s = c_edge[sel], c_side[sel]
    return _describe(rng, roads, admin, sel, e, s, c_along[sel], use, rects, community)


def _describe(
    rng: np.random.Generator,
    roads: RoadNetwork,
    admin: Admin,
    sel: I64,
    e: I64,
    s: I64,
    along: F64,
    use: I64,
    rects: Geoms,
    community: I64,
) -> Buildings:
    n = len(sel)
    comm = admin.communities
    comm_code = comm["code"].to_numpy(dtype=STR)[community]
    # House numbers: rank along each side of each named road.
    line = roads.line[e]
    pos = roads.line_pos[e] + along
    t = pd.DataFrame({"line": line, "side": s, "pos": pos})
    rank = t.sort_values(["line", "side", "pos"]).groupby(["line", "side"]).cumcount().sort_index().to_numpy()
    number = 2 * rank + np.where(s > 0, 1, 2)
    road = roads.line_names[line]
    d_codes = admin.districts["code"].to_numpy(dtype=STR)
    district = np.searchsorted(d_codes, np.strings.slice(comm_code, 0, 6))
    d_names = admin.districts["name"].to_numpy(dtype=STR)
    address = np.strings.add(
        np.strings.add(np.strings.add("北京市", d_names[district]), road), number.astype(STR)
    )
    address = np.strings.add(address, "号")
    # Codes: community code + 4-digit sequence, in address order within the community.
    t = pd.DataFrame({"c": comm_code.astype(object), "line": line, "pos": pos, "side": s})
    t = t.sort_values(["c", "line", "side", "pos"], kind="stable")
    seq = t.groupby("c").cumcount().sort_index().to_numpy() + 1
    code = np.strings.add(comm_code, np.strings.zfill(seq.astype(STR), 4))
    # Names: a compound name shared along one side of a road in a community, then the block number.
    v = vocab()
    key = (community * (len(roads.line_names) + 1) + line) * 2 + (s > 0)
    _, group = np.unique(key, return_inverse=True)
    n_groups = int(group.max()) + 1 if n else 0
    g_word = words(rng, n_groups)
    suffix_by_use = [np.array(v.raw["building_suffix"][u], dtype=STR) for u in USES]
    suffix = np.empty(n, dtype=STR)
    for u, table in enumerate(suffix_by_use):  # seven uses, not per building
        mask = use == u
        suffix[mask] = table[rng.integers(0, len(table), int(mask.sum()))]
    base = join(np.where(use == 0, g_word[group], words(rng, n)), suffix)
    block = pd.Series(group).groupby(group).cumcount().to_numpy() + 1
    name = np.where(use == 0, join(base, block.astype(STR), "号楼"), base)
    lo, hi = _FLOORS[use, 0], _FLOORS[use, 1]
    floors = rng.integers(lo, hi + 1)
    year = rng.integers(1958, 2024, n)
    frame = gpd.GeoDataFrame(
        {
            "code": code,
            "name": name,
            "address": address,
            "floors": floors.astype(np.int64),
            "height_m": np.round(floors * np.where(use == 0, 2.9, 3.8), 1),
            "use": np.array(USES, dtype=STR)[use],
            "year_built": year.astype(np.int64),
            "parent_code": comm_code,
        },
        geometry=rects,
    )
    order = np.argsort(code)
    centroid = np.column_stack(
        [shapely.get_x(shapely.centroid(rects)), shapely.get_y(shapely.centroid(rects))]
    )
    return Buildings(
        frame.iloc[order].reset_index(drop=True),
        centroid[order],
        use[order],
        district[order],
        road[order],
        number[order].astype(np.int64),
    )


__all__ = ["USES", "Buildings", "build_buildings"]
