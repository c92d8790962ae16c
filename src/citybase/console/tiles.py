"""Mapbox Vector Tiles of a dataset's points in a time window, made by DuckDB spatial's ST_AsMVT.

At 10M points the map cannot take GeoJSON: a tile holds the points of one XYZ tile, binned on a
`BINS` x `BINS` raster of the tile (one feature per non-empty bin, with `n`, the points in it), so a
tile's size is bounded at any zoom and a point's own bin is a pixel or less once zoomed in. The
tile's box is read through the dataset's H3 ranges (QueryCore.spatial_source), so a tile reads the
row groups around it, not the city.

>>> mercator_x = tile_sql_x("lon")
>>> "20037508" in mercator_x
True
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from citybase.console.geo import ORIGIN, RADIUS, mercator_bounds, tile_bounds
from citybase.errors import InputError
from citybase.query.scope import ReadScope

if TYPE_CHECKING:
    from citybase.platform import CityBase

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
    copy: str | None = None,
) -> tuple[bytes, int, int]:
    """The tile's bytes, its feature count and its point count.

    `copy` is the map's time-sorted working copy of the dataset (cache.py), used for open scopes.
    """
    if not (0 <= z <= 22 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise InputError(f"no tile {z}/{x}/{y}")
    q = cb.query
    lon0, lat0, lon1, lat1 = tile_bounds(z, x, y)
    src = q.spatial_source(dataset, scope, (lon0, lat0, lon1, lat1))
    src.need("lon", "lat")
    relation = copy if copy is not None and scope.is_open else src.sql
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
