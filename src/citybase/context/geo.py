"""Geo-queries (clause 4.10): georel, geometry and coordinates, evaluated with Shapely.

Distances for `near` are metres on a local equirectangular projection around the reference
geometry: exact to well under 1% within a city, which is the scale these queries ask about.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from citybase.context.errors import BadRequestData, InvalidRequest

GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


def to_shape(geojson: dict[str, Any]) -> BaseGeometry:
    """A Shapely geometry from GeoJSON; raises on malformed coordinates."""
    g = shape(geojson)
    if g.is_empty:
        raise ValueError("empty geometry")
    return g


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query: relation, optional distance bound, and the reference geometry."""

    georel: str
    geometry: BaseGeometry
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None

    def bbox(self) -> tuple[float, float, float, float] | None:
        """A lon/lat box every match intersects, for pruning in the store (None: no pruning)."""
        if self.georel in ("disjoint",) or self.min_distance is not None:
            return None
        minx, miny, maxx, maxy = self.geometry.bounds
        if self.max_distance is not None:
            lat = (miny + maxy) / 2
            dlat = self.max_distance / 110_540.0
            dlon = self.max_distance / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
            return (minx - dlon, miny - dlat, maxx + dlon, maxy + dlat)
        return (minx, miny, maxx, maxy)

    def matches(self, candidate: BaseGeometry) -> bool:
        ref = self.geometry
        if self.georel == "near":
            d = metres(ref, candidate)
            if self.max_distance is not None and d > self.max_distance:
                return False
            return not (self.min_distance is not None and d < self.min_distance)
        if self.georel == "within":
            return bool(candidate.within(ref))
        if self.georel == "contains":
            return bool(candidate.contains(ref))
        if self.georel == "intersects":
            return bool(candidate.intersects(ref))
        if self.georel == "equals":
            return bool(candidate.equals(ref))
        if self.georel == "disjoint":
            return bool(candidate.disjoint(ref))
        return bool(candidate.overlaps(ref))


def metres(a: BaseGeometry, b: BaseGeometry) -> float:
    """Distance in metres between two lon/lat geometries (local projection around `a`)."""
    c = a.centroid
    kx = 111_320.0 * math.cos(math.radians(c.y))
    ky = 110_540.0

    def project(xy: Any) -> Any:
        return (xy - (c.x, c.y)) * (kx, ky)

    return float(shapely.transform(a, project).distance(shapely.transform(b, project)))


def parse_georel(text: str) -> tuple[str, float | None, float | None]:
    """`near;maxDistance==2000` -> ("near", 2000, None)."""
    parts = text.split(";")
    rel = parts[0]
    if rel not in GEORELS:
        raise BadRequestData(f"georel {rel!r} is not one of {', '.join(GEORELS)}")
    max_d = min_d = None
    for p in parts[1:]:
        name, _, val = p.partition("==")
        try:
            number = float(val)
        except ValueError as e:
            raise BadRequestData(f"georel modifier {p!r} needs a number") from e
        if name == "maxDistance":
            max_d = number
        elif name == "minDistance":
            min_d = number
        else:
            raise BadRequestData(f"unknown georel modifier {name!r}")
    if rel == "near" and max_d is None and min_d is None:
        raise BadRequestData("near needs maxDistance or minDistance")
    return rel, max_d, min_d


def parse_geoquery(
    georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None = None
) -> GeoQuery | None:
    """A GeoQuery from the query parameters (or a subscription's geoQ); None when absent."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if georel is None or geometry is None or coordinates is None:
        raise BadRequestData("a geo-query needs georel, geometry and coordinates together")
    if geometry not in GEOMETRIES:
        raise BadRequestData(f"geometry {geometry!r} is not supported")
    if isinstance(coordinates, str):
        try:
            coordinates = json.loads(coordinates)
        except ValueError as e:
            raise BadRequestData(f"coordinates {coordinates!r} are not a JSON array") from e
    try:
        g = to_shape({"type": geometry, "coordinates": coordinates})
    except Exception as e:
        raise BadRequestData(f"coordinates do not make a valid {geometry}: {e}") from e
    rel, max_d, min_d = parse_georel(georel)
    return GeoQuery(rel, g, geoproperty or "location", max_d, min_d)


def check_query_param_types(value: str | None, name: str) -> None:
    if value is not None and not value:
        raise InvalidRequest(f"{name} is empty")
