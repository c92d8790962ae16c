"""Small geometry helpers for the map: JSON-safe values, web-mercator tiles, simplification per zoom.

No basemap comes from the internet: every layer the console draws is built here from the city
model or the lake, in WGS 84 (GeoJSON) or in web-mercator tile coordinates (vector tiles).
"""

from __future__ import annotations

import base64
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

#: Half the web-mercator world's width in metres (EPSG:3857).
ORIGIN = 20037508.342789244
RADIUS = 6378137.0


def jsonable(v: Any) -> Any:
    """A value JSON can carry: times as ISO text, bytes as base64, H3 ids as hex."""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 2**53:
        return f"{v:x}"
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The lon/lat box of an XYZ tile.

    >>> [round(v, 3) for v in tile_bounds(1, 1, 0)]
    [0.0, 0.0, 180.0, 85.051]
    """
    n = 2.0**z

    def lon(i: float) -> float:
        return i / n * 360.0 - 180.0

    def lat(j: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * j / n))))

    return (lon(x), lat(y + 1), lon(x + 1), lat(y))


def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The EPSG:3857 box of an XYZ tile (what ST_TileEnvelope gives, computed here)."""
    size = 2 * ORIGIN / 2**z
    return (-ORIGIN + x * size, ORIGIN - (y + 1) * size, -ORIGIN + (x + 1) * size, ORIGIN - y * size)


def tolerance(zoom: float) -> float:
    """Degrees of simplification that stay under about half a screen pixel at `zoom`.

    >>> tolerance(10) < tolerance(5)
    True
    """
    return float(360.0 / (256 * 2.0 ** max(0.0, zoom)) / 2)


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """`xmin,ymin,xmax,ymax` or None (the query engine's parser, citybase.query.ranges)."""
    if not text:
        return None
    from citybase.query.ranges import parse_bbox as parse

    return parse(text)
