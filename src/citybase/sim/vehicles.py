"""Vehicle tracks: taxis and buses driving along the road network.

Each vehicle takes a random walk over intersections (no U-turns unless at a dead end), so its route
is a chain of connected segments. It drives each segment at a speed set by the road class, the
vehicle type and rush-hour congestion, and waits at some intersections (lights, bus stops). Samples
every `track_interval_s` seconds are linear interpolations on the current segment, so every point
is on a written road line. The walk loops over route steps (a few hundred), vectorized over the
vehicles; sampling is vectorized over all points.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from citybase.sim.declare import F, Output, spec
from citybase.sim.rand import F64, I64, Bool, stream
from citybase.sim.sensors import _local_ts
from citybase.sim.vocab import STR, Str
from citybase.sim.world import START, World

_PLATE_LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"), dtype=STR)


def _walk(rng: np.random.Generator, w: World, cur: I64, prev: I64, steps: int) -> tuple[I64, I64, I64]:
    """`steps` more segments from `cur` (having come from `prev`): next nodes and edges, (V, steps)."""
    r = w.roads
    deg = np.diff(r.adj_ptr)
    v = len(cur)
    nodes = np.empty((v, steps), dtype=np.int64)
    edges = np.empty((v, steps), dtype=np.int64)
    for i in range(steps):  # route steps, vectorized over vehicles
        d = deg[cur]
        choice = (rng.random(v) * d).astype(np.int64)
        slot = r.adj_ptr[cur] + choice
        back = (r.adj_node[slot] == prev) & (d > 1)
        alt = (choice + 1 + (rng.random(v) * (d - 1)).astype(np.int64)) % d
        slot = np.where(back, r.adj_ptr[cur] + alt, slot)
        prev, cur = cur, r.adj_node[slot]
        nodes[:, i] = cur
        edges[:, i] = r.adj_edge[slot]
    return nodes, edges, prev


def _plates(rng: np.random.Generator, n: int, bus: Bool) -> Str:
    letter = np.where(bus, "A", _PLATE_LETTERS[rng.integers(1, len(_PLATE_LETTERS), n)]).astype(STR)
    digits = np.strings.zfill(rng.integers(0, 100_000, n).astype(STR), 5)
    out: Str = np.strings.add(np.strings.add(np.strings.add("京", letter), "·"), digits)
    return out


def vehicle_positions(w: World) -> Output:
    rng = stream(w.seed, "vehicles")
    s, r = w.scale, w.roads
    v = s.vehicles
    bus = np.arange(v) >= v - round(v * s.bus_share)
    duration = s.track_minutes * 60.0
    length = r.length
    # Rush-hour congestion: the tracks start at 07:30 on the first day.
    congestion = 0.75
    base = np.where(bus, 0.6, 1.0) * rng.uniform(0.75, 1.1, v) * congestion
    # Walk in blocks until every vehicle's route lasts longer than its track.
    need = duration + s.track_interval_s + 1.0
    cur = rng.integers(0, len(r.xy), v)
    prev = np.full(v, -1, dtype=np.int64)
    parts: list[tuple[I64, F64, F64, F64]] = []
    total = np.zeros(v)
    node_blocks = [cur[:, None]]
    while total.min() < need:
        nb, eb, prev = _walk(rng, w, cur, prev, 32)
        cur = nb[:, -1]
        spd = r.speed_limit_kmh[eb] / 3.6 * base[:, None] * rng.uniform(0.8, 1.15, eb.shape)
        drv = length[eb] / spd
        stop_p = np.where(bus[:, None], 0.55, 0.35)
        wt = np.where(rng.random(eb.shape) < stop_p, rng.uniform(5, 60, eb.shape), 0.0)
        parts.append((eb, spd, drv, wt))
        node_blocks.append(nb)
        total += (drv + wt).sum(axis=1)
    nodes = np.concatenate(node_blocks, axis=1)
    edges = np.concatenate([p[0] for p in parts], axis=1)
    speed = np.concatenate([p[1] for p in parts], axis=1)
    drive = np.concatenate([p[2] for p in parts], axis=1)
    wait = np.concatenate([p[3] for p in parts], axis=1)
    steps = edges.shape[1]
    wait[:, 0] = 0.0
    # Segment i: depart at dep[i], arrive at dep[i] + drive[i]; wait[i] before departing.
    dep = np.cumsum(wait + np.concatenate([np.zeros((v, 1)), drive[:, :-1]], axis=1), axis=1)
    dep = dep + rng.uniform(0, s.track_interval_s, (v, 1))  # vehicles do not report in lockstep
    n_t = int(duration // s.track_interval_s)
    t = np.arange(n_t) * float(s.track_interval_s) + dep[:, :1]  # (v, n_t), first sample at departure
    # Find the segment of every sample at once: offset each vehicle's timeline past the previous one.
    span = float(dep[:, -1].max() + drive[:, -1].max()) + 1.0
    offset = np.arange(v, dtype=np.float64)[:, None] * span
    flat_dep = (dep + offset).ravel()
    seg = np.searchsorted(flat_dep, (t + offset).ravel(), side="right") - 1
    veh = np.repeat(np.arange(v), n_t)
    i = seg - veh * steps  # segment index within the vehicle's route
    tt = t.ravel() - dep[veh, i]
    dur = drive[veh, i]
    on_road = tt <= dur
    frac = np.where(on_road, np.clip(tt / dur, 0.0, 1.0), 1.0)
    a = r.xy[nodes[veh, i]]
    b = r.xy[nodes[veh, i + 1]]
    pos = a + (b - a) * frac[:, None]
    lon, lat = w.frame.to_lonlat(pos[:, 0], pos[:, 1])
    heading = np.degrees(np.arctan2(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])) % 360
    kmh = np.where(on_road, speed[veh, i] * 3.6 + rng.normal(0, 1.0, len(veh)), 0.0)
    local = START + np.timedelta64(int(7.5 * 3600), "s") + (t.ravel() * 1000).astype("timedelta64[ms]")
    vid = np.where(
        bus,
        np.strings.add("BUS", np.strings.zfill(np.arange(v).astype(STR), 4)),
        np.strings.add("TX", np.strings.zfill(np.arange(v).astype(STR), 5)),
    )
    plates = _plates(rng, v, bus)
    table = pa.table(
        {
            "vehicle_id": pa.array(vid[veh].astype(object), pa.string()),
            "vehicle_type": pa.array(np.where(bus, "bus", "taxi")[veh].astype(object), pa.string()),
            "plate": pa.array(plates[veh].astype(object), pa.string()),
            "ts": _local_ts(local),
            "gps_lon": pa.array(lon, pa.float64()),
            "gps_lat": pa.array(lat, pa.float64()),
            "speed": pa.array(np.round(np.clip(kmh, 0, None), 1), pa.float64()),
            "heading": pa.array(np.round(heading, 1), pa.float64()),
        }
    )
    sp = spec(
        name="vehicle_positions",
        title="出租车及公交车辆定位",
        description="GPS positions of taxis and buses every few seconds, relayed by the dispatch platform.",
        department="transport",
        system="vehicle-dispatch",
        kind="tracks",
        fields=[
            F("vehicle_id", required=True),
            F("vehicle_type", enum=["taxi", "bus"]),
            F("plate", description="licence plate"),
            F("ts", "timestamp", required=True),
            F("gps_lon", "float", unit="degree", min=-180, max=180, required=True),
            F("gps_lat", "float", unit="degree", min=-90, max=90, required=True),
            F("speed", "float", unit="km/h", min=0, max=200),
            F("heading", "float", unit="degree", min=0, max=360, description="clockwise from north"),
        ],
        time_field="ts",
        object_field="vehicle_id",
        geometry={"lon": "gps_lon", "lat": "gps_lat"},
        key=["vehicle_id", "ts"],
        sharing="conditional",
        update_cycle="real-time",
    )
    return Output(sp, table, "data/vehicle_positions.parquet", "parquet")
