"""Mapbox Vector Tiles of a dataset's points in a time window.

At 10M points the map cannot take GeoJSON: a tile holds the points of one XYZ tile, binned on a
`BINS` x `BINS` raster of the tile (one feature per non-empty bin, with `n`, the points in it), so a
tile's size is bounded at any zoom and a point's own bin is a pixel or less once zoomed in.

Two ways to the same tile: for an open read with a time window, from the map's in-memory index
(index.py: the window's rows are a slice, the box a mask over it, the bins a `bincount`), encoded
here by NumPy (`encode`, a few hundred microseconds for a full tile); otherwise (a reader with a
scope, no window) by DuckDB spatial's ST_AsMVT over the lake, read through the dataset's H3 ranges
(QueryCore.spatial_source) so that a tile reads the row groups around it, not the city.

>>> mercator_x = tile_sql_x("lon")
>>> "20037508" in mercator_x
True
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from citybase.console.geo import ORIGIN, RADIUS, mercator_bounds, tile_bounds
from citybase.console.index import State, to_us
from citybase.errors import InputError
from citybase.query.scope import ReadScope

if TYPE_CHECKING:
    from citybase.platform import CityBase

Arr = np.ndarray[Any, Any]

EXTENT = 4096
BINS = 128
LAYER = "points"


def tile_sql_x(lon: str) -> str:
    return f"({lon} * {ORIGIN} / 180.0)"


def tile_sql_y(lat: str) -> str:
    return f"(ln(tan((90.0 + {lat}) * pi() / 360.0)) * {RADIUS})"


def tile(
    cb: CityBase,
    dataset: str,
    scope: ReadScope,
    z: int,
    x: int,
    y: int,
    start: datetime | None = None,
    end: datetime | None = None,
    index: State | None = None,
) -> tuple[bytes, int, int]:
    """The tile's bytes, its feature count and its point count.

    `index` is the map's index of the dataset (index.py), used for open scopes with a time window.
    """
    if not (0 <= z <= 22 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise InputError(f"no tile {z}/{x}/{y}")
    q = cb.query
    lon0, lat0, lon1, lat1 = tile_bounds(z, x, y)
    if index is not None and scope.is_open and (start is not None or end is not None):
        q.time_where(q.source(dataset, scope), start, end)  # the lake's checks of the window
        t0 = to_us(start) if start is not None else None
        t1 = to_us(end) if end is not None else None
        bx, by, n = index.bins(t0, t1, (lon0, lat0, lon1, lat1), mercator_bounds(z, x, y), BINS)
        return encode(bx, by, n), len(n), int(n.sum())
    src = q.spatial_source(dataset, scope, (lon0, lat0, lon1, lat1))
    src.need("lon", "lat")
    relation = src.sql
    where = [
        f"lon >= {lon0!r}",
        f"lon < {lon1!r}",
        f"lat >= {lat0!r}",
        f"lat < {lat1!r}",
        *q.time_where(src, start, end),
    ]
    mx0, my0, mx1, my1 = mercator_bounds(z, x, y)
    cell = (mx1 - mx0) / BINS
    mx, my = tile_sql_x("lon"), tile_sql_y("lat")
    binned = (
        f"SELECT floor(({mx} - {mx0!r}) / {cell!r}) AS bin_x, floor(({my} - {my0!r}) / {cell!r}) AS bin_y, "
        f"count(*) AS n FROM {relation} AS s WHERE {' AND '.join(where)} GROUP BY ALL"
    )
    env = f"ST_Extent(ST_MakeEnvelope({mx0!r}, {my0!r}, {mx1!r}, {my1!r}))"
    centre = f"ST_Point({mx0!r} + (bin_x + 0.5) * {cell!r}, {my0!r} + (bin_y + 0.5) * {cell!r})"
    sql = (
        f"SELECT ST_AsMVT({{'geom': ST_AsMVTGeom({centre}, {env}, {EXTENT}, 64, true), 'n': n}}, "
        f"'{LAYER}') AS tile, count(*) AS features, sum(n) AS points "
        f"FROM ({binned})"
    )
    row = q.run(sql).to_pylist()[0]
    data = row["tile"] or b""
    return bytes(data), int(row["features"] or 0), int(row["points"] or 0)


# -- encoding a tile with NumPy -------------------------------------------------------------------


def _varints(v: Arr, width: int) -> tuple[Arr, Arr]:
    """Protocol-buffer varints of non-negative ints below 2**(7 * width): a [len(v), width] byte
    matrix (unused bytes 0) and each one's length."""
    v = v.astype(np.uint64)
    out = np.zeros((len(v), width), np.uint8)
    lens = np.ones(len(v), np.int64)
    for k in range(width):
        byte = (v & np.uint64(0x7F)).astype(np.uint8)
        v = v >> np.uint64(7)
        more = v > 0
        out[:, k] = byte | (more.astype(np.uint8) << 7)
        lens += more
    if (v > 0).any():  # pragma: no cover - callers size `width` for their values
        raise ValueError("a value too large for its varint width")
    return out, np.minimum(lens, width)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return _varint(tag << 3 | 2) + _varint(len(payload)) + payload


def encode(bx: Arr, by: Arr, n: Arr) -> bytes:
    """A Mapbox Vector Tile (layer `points`, extent `EXTENT`) of one point per bin at its centre,
    with the property `n`: what ST_AsMVT makes of the SQL path's bins, in a few NumPy operations.

    >>> decode(encode(np.array([0, 127]), np.array([0, 5]), np.array([3, 1])))
    [(16, 4080, 3), (4080, 3920, 1)]
    """
    k = len(n)
    if not k:
        return b""
    step = EXTENT // BINS
    x = bx.astype(np.int64) * step + step // 2
    y = EXTENT - (by.astype(np.int64) * step + step // 2)
    values, vi = np.unique(n, return_inverse=True)
    # Every feature is the same 19 bytes at most, three of its fields varints of 1 to 3 bytes:
    # 0x12 len | 0x12 tags_len 0x00 vi(1-3) | 0x18 0x01 | 0x22 geom_len 0x09 zx(1-2) zy(1-2).
    vi_b, vi_l = _varints(vi, 3)
    zx_b, zx_l = _varints((x << 1) ^ (x >> 63), 2)  # zigzag; |x| < 8192 in the tile's buffer
    zy_b, zy_l = _varints((y << 1) ^ (y >> 63), 2)
    m = np.zeros((k, 17), np.uint8)
    m[:, 0] = 0x12  # Layer.features
    m[:, 1] = 2 + (1 + vi_l) + 2 + 2 + (1 + zx_l + zy_l)
    m[:, 2] = 0x12  # Feature.tags, packed: key 0 ("n"), value index
    m[:, 3] = 1 + vi_l
    m[:, 5:8] = vi_b
    m[:, 8] = 0x18  # Feature.type = POINT
    m[:, 9] = 0x01
    m[:, 10] = 0x22  # Feature.geometry, packed: MoveTo(1), x, y
    m[:, 11] = 1 + zx_l + zy_l
    m[:, 12] = 0x09
    m[:, 13:15] = zx_b
    m[:, 15:17] = zy_b
    keep = np.ones((k, 17), bool)
    keep[:, 5:8] = np.arange(3) < vi_l[:, None]
    keep[:, 13:15] = np.arange(2) < zx_l[:, None]
    keep[:, 15:17] = np.arange(2) < zy_l[:, None]
    feats = m[keep].tobytes()
    vals = b"".join(_field(4, b"\x28" + _varint(int(v))) for v in values.tolist())  # Value.uint_value
    layer = (
        b"\x78\x02"  # version 2
        + _field(1, LAYER.encode())
        + feats
        + _field(3, b"n")
        + vals
        + b"\x28"
        + _varint(EXTENT)
    )
    return _field(3, layer)  # Tile.layers


def _read(buf: bytes, i: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        b = buf[i]
        out |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _read(buf, i)
        tag, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read(buf, i)
            out.append((tag, v))
        elif wire == 2:
            ln, i = _read(buf, i)
            out.append((tag, buf[i : i + ln]))
            i += ln
        elif wire == 1:
            out.append((tag, buf[i : i + 8]))
            i += 8
        elif wire == 5:
            out.append((tag, buf[i : i + 4]))
            i += 4
        else:
            raise ValueError(f"wire type {wire} in a vector tile")
    return out


def decode(data: bytes) -> list[tuple[int, int, int]]:
    """The (x, y, n) of every point of a tile's `points` layer, sorted (for tests and benchmarks)."""
    out = []
    for tag, layer in _fields(data):
        if tag != 3 or not isinstance(layer, bytes):
            continue
        parts = _fields(layer)
        keys = [v.decode() for t, v in parts if t == 3 and isinstance(v, bytes)]
        values = []
        for t, v in parts:
            if t == 4 and isinstance(v, bytes):
                _tag_v, raw = _fields(v)[0]
                values.append(raw if isinstance(raw, int) else int.from_bytes(raw, "little"))
        for t, f in parts:
            if t != 2 or not isinstance(f, bytes):
                continue
            props, geom = {}, []
            for ft, fv in _fields(f):
                if ft == 2 and isinstance(fv, bytes):
                    ids = _packed(fv)
                    props = {keys[ids[j]]: values[ids[j + 1]] for j in range(0, len(ids), 2)}
                elif ft == 4 and isinstance(fv, bytes):
                    geom = _packed(fv)
            zz = geom[1:3]
            x, y = ((v >> 1) ^ -(v & 1) for v in zz)
            out.append((x, y, int(props["n"])))
    return sorted(out)


def _packed(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _read(buf, i)
        out.append(v)
    return out
