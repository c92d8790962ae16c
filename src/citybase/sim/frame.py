"""Where the sample city sits on Earth, and its outline.

The generator works in metres on a local plane and converts to longitude/latitude only when it
writes. The conversion is affine (an equirectangular frame around the centre), so a straight road
segment in metres is exactly a straight segment in degrees: a vehicle placed on a segment in metres is
on the written road line to floating-point precision, which is what makes "on the road" testable.
Over the ~35 km of the city the frame's scale error against a true projection stays below 0.1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon

from citybase.sim.rand import F64, stream

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0


@dataclass(frozen=True)
class CityFrame:
    """A city's bounding box in degrees and its local metric plane (origin at the centre).

    >>> f = CityFrame()
    >>> round(float(f.to_lonlat(np.array([0.0]), np.array([0.0]))[0][0]), 2)
    116.4
    """

    west: float = 116.20
    south: float = 39.75
    east: float = 116.60
    north: float = 40.05
    timezone: str = "Asia/Shanghai"

    @property
    def lon0(self) -> float:
        return (self.west + self.east) / 2

    @property
    def lat0(self) -> float:
        return (self.south + self.north) / 2

    @property
    def kx(self) -> float:
        """Metres per degree of longitude at the centre."""
        return _M_PER_DEG_LON_EQ * math.cos(math.radians(self.lat0))

    @property
    def ky(self) -> float:
        return _M_PER_DEG_LAT

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half width and half height of the box in metres."""
        return ((self.east - self.west) / 2 * self.kx, (self.north - self.south) / 2 * self.ky)

    def to_lonlat(self, x: F64, y: F64) -> tuple[F64, F64]:
        return x / self.kx + self.lon0, y / self.ky + self.lat0

    def to_xy(self, lon: F64, lat: F64) -> tuple[F64, F64]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def geoms_to_lonlat(self, geoms: NDArray[np.object_]) -> NDArray[np.object_]:
        scale = np.array([1 / self.kx, 1 / self.ky])
        origin = np.array([self.lon0, self.lat0])
        out: NDArray[np.object_] = shapely.transform(geoms, lambda c: c * scale + origin)
        return out

    def geoms_to_xy(self, geoms: NDArray[np.object_]) -> NDArray[np.object_]:
        scale = np.array([self.kx, self.ky])
        origin = np.array([self.lon0, self.lat0])
        out: NDArray[np.object_] = shapely.transform(geoms, lambda c: (c - origin) * scale)
        return out


BEIJING = CityFrame()


def city_boundary(frame: CityFrame, seed: int) -> Polygon:
    """A wobbly, star-shaped outline filling 75-97 % of the frame's ellipse (metres).

    Star-shaped around the centre, so the polygon is always valid and the centre always inside.
    """
    rng = stream(seed, "boundary")
    hx, hy = frame.half_extent
    theta = np.linspace(0.0, 2 * np.pi, 256, endpoint=False)
    wobble = np.zeros_like(theta)
    for m in range(2, 8):  # a handful of harmonics, not per point
        wobble += rng.normal(0, 1.0 / m) * np.cos(m * theta + rng.uniform(0, 2 * np.pi))
    wobble = wobble / max(float(np.abs(wobble).max()), 1e-9)
    r = 0.86 + 0.11 * wobble
    ring = np.column_stack([hx * r * np.cos(theta), hy * r * np.sin(theta)])
    return Polygon(ring)


def centre_weight(x: F64, y: F64, frame: CityFrame, *, floor: float = 0.15) -> F64:
    """Relative density of city life: highest in the centre, never zero at the edge."""
    hx, hy = frame.half_extent
    d2 = (x / (0.45 * hx)) ** 2 + (y / (0.45 * hy)) ** 2
    out: F64 = floor + np.exp(-d2)
    return out


def sample_in(
    poly: shapely.Geometry, n: int, rng: np.random.Generator, frame: CityFrame | None = None
) -> F64:
    """`n` random points inside `poly` (rows of x, y), denser at the centre when a frame is given.

    Rejection sampling in batches: vectorized, and the number of rounds does not grow with `n`.
    """
    minx, miny, maxx, maxy = shapely.bounds(poly)
    shapely.prepare(poly)
    got: list[F64] = []
    have = 0
    frac = max(float(shapely.area(poly)) / ((maxx - minx) * (maxy - miny)), 0.05)
    while have < n:
        m = int((n - have) / frac * 1.5) + 16
        x = rng.uniform(minx, maxx, m)
        y = rng.uniform(miny, maxy, m)
        keep = shapely.contains_xy(poly, x, y)
        if frame is not None:
            w = centre_weight(x, y, frame)
            keep &= rng.random(m) * w.max() < w
        pts = np.column_stack([x[keep], y[keep]])
        got.append(pts)
        have += len(pts)
    out: F64 = np.concatenate(got)[:n]
    return out
