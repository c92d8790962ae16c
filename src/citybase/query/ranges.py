"""B1 and B2: the rows of a dataset in a box or a polygon, optionally in a time window.

Points match when their lon/lat lies in the box (edges included) or in the polygon (boundary
included: `ST_Intersects`, shapely's `intersects_xy`). Areas match when their shape meets the box
or the polygon. What DuckDB skips: row groups whose H3 id range misses the area's cover
(prune.py), whose lon/lat (or, for areas, xmin..ymax) statistics miss the box, and, with a time
window, files of other time partitions and row groups outside the window.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TypeAlias

import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from citybase.errors import InputError
from citybase.query._sql import TimeLike, literal, parse_time
from citybase.query.core import QueryCore, Source
from citybase.query.prune import BBox
from citybase.query.scope import ReadScope

Area: TypeAlias = BBox | BaseGeometry | str


def parse_bbox(text: str) -> BBox:
    """A bbox from its text form `xmin,ymin,xmax,ymax` (URLs, the CLI), checked as `as_area` does.

    >>> parse_bbox("116.3,39.9,116.4,40.0")
    (116.3, 39.9, 116.4, 40.0)
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"bbox {text!r} is not xmin,ymin,xmax,ymax") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"bbox {text!r} has a coordinate that is not a number")
    box = as_area((x0, y0, x1, y1))
    assert isinstance(box, tuple)
    return box


def as_area(area: Area) -> BBox | BaseGeometry:
    """A bbox tuple as given, or a polygonal shapely geometry (WKT accepted), made valid and 2D."""
    if isinstance(area, tuple | list):
        if len(area) != 4:
            raise InputError(f"a bbox is (xmin, ymin, xmax, ymax), not {area!r}")
        x0, y0, x1, y1 = (float(v) for v in area)
        if not (x0 <= x1 and y0 <= y1):
            raise InputError(f"bbox {area!r} has min above max")
        return (x0, y0, x1, y1)
    geom = shapely.from_wkt(area) if isinstance(area, str) else area
    if not isinstance(geom, BaseGeometry) or geom.is_empty:
        raise InputError("the area must be a bbox tuple, or a non-empty shapely geometry or WKT")
    geom = shapely.force_2d(geom)
    return geom if geom.is_valid else shapely.make_valid(geom)


def geometry_literal(geom: BaseGeometry) -> str:
    """A constant GEOMETRY in SQL, from WKB (exact coordinates; WKT text would round them)."""
    return f"ST_GeomFromWKB({literal(shapely.to_wkb(geom))})"


def area_where(src: Source, area: BBox | BaseGeometry) -> list[str]:
    """The exact predicates of `area` on a source, bbox first so statistics prune before the test."""
    box = area if isinstance(area, tuple) else shapely.bounds(area).tolist()
    x0, y0, x1, y1 = (literal(float(v)) for v in box)
    if src.shapes:
        src.need("geom")
        out = []
        if all(src.raw(c) for c in ("xmin", "ymin", "xmax", "ymax")):
            out.append(f'"xmin" <= {x1} AND "xmax" >= {x0} AND "ymin" <= {y1} AND "ymax" >= {y0}')
        shape = (
            f"ST_MakeEnvelope({x0}, {y0}, {x1}, {y1})" if isinstance(area, tuple) else geometry_literal(area)
        )
        out.append(f'ST_Intersects("geom", {shape})')
        return out
    src.need("lon", "lat")
    out = [f'"lon" BETWEEN {x0} AND {x1} AND "lat" BETWEEN {y0} AND {y1}']
    if not isinstance(area, tuple):
        out.append(f'ST_Intersects(ST_Point("lon", "lat"), {geometry_literal(area)})')
    return out


class RangeQueries(QueryCore):
    def bbox(
        self, dataset: str, bbox: BBox, *, scope: ReadScope | None = None, limit: int | None = None
    ) -> pa.Table:
        """B1: rows whose position lies in the box `(xmin, ymin, xmax, ymax)` (lon/lat, edges included).

        For areas datasets, the rows whose shape meets the box.

        >>> from citybase.query.demo import demo_engine
        >>> q = demo_engine()
        >>> q.bbox("pings", (116.30, 39.90, 116.35, 39.95)).num_rows
        4
        """
        return self.range(dataset, bbox, scope=scope, limit=limit)

    def within(
        self,
        dataset: str,
        area: BaseGeometry | str,
        *,
        scope: ReadScope | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """B1: rows whose position lies in a polygon (shapely geometry or WKT; boundary included).

        For areas datasets, the rows whose shape intersects the polygon.

        >>> from citybase.query.demo import demo_engine
        >>> q = demo_engine()
        >>> q.within("pings", "POLYGON ((116.3 39.9, 116.35 39.9, 116.3 39.95, 116.3 39.9))").num_rows
        2
        """
        return self.range(dataset, area, scope=scope, limit=limit)

    def range(
        self,
        dataset: str,
        area: Area,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        scope: ReadScope | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """B2: rows in a box or polygon with `start <= time < end` on the dataset's time field.

        Times are naive UTC (as stored) or timezone-aware; either bound may be None (open).

        >>> from citybase.query.demo import demo_engine
        >>> q = demo_engine()
        >>> q.range("pings", (116.30, 39.90, 116.35, 39.95), "2024-05-01T08:00", "2024-05-01T08:01").num_rows
        2
        """
        shape = as_area(area)
        probe = self.source(dataset, scope)
        where = " AND ".join(area_where(probe, shape) + self.time_where(probe, start, end))
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        box = shape if isinstance(shape, tuple) else tuple(shapely.bounds(shape).tolist())

        def sql(table: str | None, span: tuple[datetime, datetime] | None) -> str:
            src = self.spatial_source(dataset, scope, shape, table=table, span=span)
            return f"SELECT * FROM {src.sql} AS s WHERE {where}{lim}"

        t0, t1 = parse_time(start, "start"), parse_time(end, "end")
        return self.run_on_files(dataset, scope, sql, box, t0, t1)
