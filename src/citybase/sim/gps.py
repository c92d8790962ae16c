"""Many GPS points, fast, for benchmarks: `gps_points` and its chunked form `iter_gps_points`.

Objects (phones, vehicles) live around hot spots that crowd towards the centre, so the points have
the spatial skew of real feeds. Each object moves on a smooth closed path around its anchor, sampled
at irregular times within its active days. Every value of a row is a function of the seed and the
row's global index only (counter-based hashing, no sequential random state), so the chunks of
`iter_gps_points` concatenate to exactly `gps_points`, whatever the chunk size, and 100M rows can be
made chunk by chunk in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from citybase.sim.frame import BEIJING, CityFrame
from citybase.sim.rand import F64, I64, hash_normal, hash_uniform, stream

SCHEMA = pa.schema(
    [
        ("object_id", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("speed", pa.float32()),
    ]
)
START = np.datetime64("2025-03-01T00:00:00", "us")
SPAN_DAYS = 30
_POINTS_PER_OBJECT = 1000


@dataclass(frozen=True)
class _Objects:
    end: I64  # cumulative row counts: object i owns rows [end[i-1], end[i])
    ax: F64
    ay: F64
    r1: F64
    r2: F64
    w1: F64
    w2: F64
    p: F64  # (4, m) phases
    t0: F64  # first second of activity, from START
    span: F64  # seconds of activity


def _objects(n: int, seed: int, frame: CityFrame) -> _Objects:
    rng = stream(seed, "gps", str(n))
    m = max(1, n // _POINTS_PER_OBJECT)
    w = rng.lognormal(0.0, 1.0, m)
    counts = np.floor(n * w / w.sum()).astype(np.int64)
    counts[: n - int(counts.sum())] += 1
    hx, hy = frame.half_extent
    hot = rng.normal(0, 1, (24, 2)) * [0.3 * hx, 0.3 * hy]
    h = np.minimum(rng.zipf(1.6, m) - 1, 23)
    anchor = hot[h] + rng.normal(0, 1500.0, (m, 2))
    roam = rng.random(m) < 0.15
    anchor[roam] = rng.uniform(-1, 1, (int(roam.sum()), 2)) * [hx, hy]
    total = SPAN_DAYS * 86_400.0
    span = rng.uniform(0.1, 1.0, m) * total
    return _Objects(
        end=np.cumsum(counts),
        ax=anchor[:, 0],
        ay=anchor[:, 1],
        r1=rng.uniform(300, 4000, m),
        r2=rng.uniform(100, 1500, m),
        w1=2 * np.pi / rng.uniform(3600, 8 * 3600, m),
        w2=2 * np.pi / rng.uniform(1200, 2 * 3600, m),
        p=rng.uniform(0, 2 * np.pi, (4, m)),
        t0=rng.random(m) * (total - span),
        span=span,
    )


def _fold(v: F64, h: float) -> F64:
    """Reflect into [-h, h] (a path leaving the box turns back instead of piling up on its edge)."""
    out: F64 = np.abs(np.mod(v + h, 4 * h) - 2 * h) - h
    return out


def _rows(obj: _Objects, a: int, b: int, seed: int, frame: CityFrame) -> pa.Table:
    """Rows [a, b) of the whole point set."""
    end = obj.end
    o0 = int(np.searchsorted(end, a, side="right"))
    o1 = int(np.searchsorted(end, b - 1, side="right")) + 1
    ids = np.arange(o0, o1)
    start = np.concatenate([[0], end[:-1]])[ids]
    per = np.minimum(end[ids], b) - np.maximum(start, a)
    o = np.repeat(ids, per)
    g = np.arange(a, b, dtype=np.uint64)
    k = g.astype(np.int64) - np.repeat(start, per)
    count = np.repeat(end[ids] - start, per)
    # time: evenly spaced over the object's active span, each sample jittered within its slot
    tau = obj.t0[o] + (k + 0.5 + 0.8 * (hash_uniform(g, seed) - 0.5)) * (obj.span[o] / count)
    a1 = obj.w1[o] * tau
    a2 = obj.w2[o] * tau
    s1x, s2x = np.sin(a1 + obj.p[0, o]), np.sin(a2 + obj.p[1, o])
    c1y, c2y = np.cos(a1 + obj.p[2, o]), np.cos(a2 + obj.p[3, o])
    r1, r2 = obj.r1[o], obj.r2[o]
    hx, hy = frame.half_extent
    x = _fold(obj.ax[o] + r1 * s1x + r2 * s2x + 5.0 * hash_normal(g, seed + 1), hx)
    y = _fold(obj.ay[o] + r1 * c1y + r2 * c2y + 5.0 * hash_normal(g, seed + 2), hy)
    vx = r1 * obj.w1[o] * np.cos(a1 + obj.p[0, o]) + r2 * obj.w2[o] * np.cos(a2 + obj.p[1, o])
    vy = r1 * obj.w1[o] * np.sin(a1 + obj.p[2, o]) + r2 * obj.w2[o] * np.sin(a2 + obj.p[3, o])
    lon, lat = frame.to_lonlat(x, y)
    ts = START + (tau * 1e6).astype(np.int64).astype("timedelta64[us]")
    return pa.Table.from_arrays(
        [
            pa.array(o.astype(np.int64)),
            pa.array(ts, pa.timestamp("us")),
            pa.array(lon),
            pa.array(lat),
            pa.array((np.hypot(vx, vy) * 3.6).astype(np.float32)),
        ],
        schema=SCHEMA,
    )


def iter_gps_points(
    n: int, chunk_rows: int = 2_000_000, *, seed: int = 42, city: CityFrame = BEIJING
) -> Iterator[pa.Table]:
    """`gps_points(n)` in chunks of at most `chunk_rows` rows, in order, in bounded memory.

    >>> sum(t.num_rows for t in iter_gps_points(2500, 1000, seed=1))
    2500
    """
    if n < 0 or chunk_rows < 1:
        raise ValueError("n must be >= 0 and chunk_rows >= 1")
    obj = _objects(n, seed, city)
    for a in range(0, n, chunk_rows):
        yield _rows(obj, a, min(a + chunk_rows, n), seed, city)


def gps_points(n: int, *, seed: int = 42, city: CityFrame = BEIJING) -> pa.Table:
    """`n` GPS points (object_id, ts, lon, lat, speed) over 30 days, denser in the centre.

    Rows are grouped by object and in time order within an object. 10M rows take a few seconds.

    >>> t = gps_points(1000, seed=1)
    >>> t.num_rows, t.schema.names
    (1000, ['object_id', 'ts', 'lon', 'lat', 'speed'])
    """
    chunks = list(iter_gps_points(n, seed=seed, city=city))
    return pa.concat_tables(chunks) if chunks else SCHEMA.empty_table()
