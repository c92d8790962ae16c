"""OpenStreetMap extracts (.osm.pbf, .osm) with pyosmium, one layer per read.

Layers: `buildings` (closed ways and multipolygon relations tagged building=*, assembled by
osmium's area code), `roads` (ways tagged highway=*), `pois` (nodes tagged amenity, shop or
tourism). Tags stay text, as OSM stores them; `osm_type` (node, way, relation) makes `osm_id` unique.

An extract cuts ways at its border: their outside nodes are missing. A road keeps the part inside
(a MultiLineString where it leaves and comes back); a building, whose ring cannot be closed, still
comes through with a null geometry, so that the gateway's quarantine records it instead of the
reader hiding it. `_line` is the 1-based feature number in the output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import osmium
import osmium.geom
import pyarrow as pa
import shapely
from osmium.filter import EntityFilter, KeyFilter

from citybase.gateway.readers._common import check_file, fail, rebatch, with_line
from citybase.gateway.readers.base import GEOMETRY, LINE, ReadOptions, register

Row = dict[str, Any]

_ID = [("osm_type", pa.string()), ("osm_id", pa.int64())]
_GEOM_LINE = [(GEOMETRY, pa.binary()), pa.field(LINE, pa.int64(), nullable=False)]
SCHEMAS: dict[str, pa.Schema] = {
    "buildings": pa.schema(
        [
            *_ID,
            ("building", pa.string()),
            ("name", pa.string()),
            ("height", pa.string()),
            ("levels", pa.string()),
            ("addr_street", pa.string()),
            ("addr_housenumber", pa.string()),
            *_GEOM_LINE,
        ]
    ),
    "roads": pa.schema(
        [
            *_ID,
            ("highway", pa.string()),
            ("name", pa.string()),
            ("oneway", pa.string()),
            ("maxspeed", pa.string()),
            ("lanes", pa.string()),
            *_GEOM_LINE,
        ]
    ),
    "pois": pa.schema([*_ID, ("kind", pa.string()), ("name", pa.string()), *_GEOM_LINE]),
}
_POI_KEYS = ("amenity", "shop", "tourism")
_BUILDING_TAGS = {
    "building": "building",
    "name": "name",
    "height": "height",
    "levels": "building:levels",
    "addr_street": "addr:street",
    "addr_housenumber": "addr:housenumber",
}
_ROAD_TAGS = {k: k for k in ("highway", "name", "oneway", "maxspeed", "lanes")}


class OsmReader:
    """OSM data; option `layer` is one of buildings, roads, pois."""

    name: str = "osm"
    suffixes: tuple[str, ...] = (".osm.pbf", ".osm", ".osm.gz", ".osm.bz2")

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        if options.layer not in SCHEMAS:
            got = f"got {options.layer!r}" if options.layer else "none given"
            raise fail(path, f"pass layer= one of {', '.join(SCHEMAS)} ({got})")
        produce: Callable[[Path], Iterator[Row]] = {
            "buildings": _buildings,
            "roads": _roads,
            "pois": _pois,
        }[options.layer]
        schema = SCHEMAS[options.layer]
        yield from _batches(path, produce, schema, options.batch_rows)


def _batches(
    path: Path, produce: Callable[[Path], Iterator[Row]], schema: pa.Schema, size: int
) -> Iterator[pa.RecordBatch]:
    data = schema.remove(schema.get_field_index(LINE))
    chunk = max(1, min(size, 50_000))  # rows held as Python dicts before they become Arrow
    first = 1

    def chunks() -> Iterator[pa.RecordBatch]:
        rows: list[Row] = []
        for row in produce(path):
            rows.append(row)
            if len(rows) >= chunk:
                yield pa.RecordBatch.from_pylist(rows, schema=data)
                rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=data)

    try:
        for batch in rebatch(chunks(), size):
            yield with_line(batch, first)
            first += batch.num_rows
    except RuntimeError as e:  # libosmium reports unreadable input as RuntimeError
        raise fail(path, "cannot read as OpenStreetMap data", e) from None


def _tags(tags: osmium.osm.TagList, wanted: dict[str, str]) -> Row:
    return {column: tags.get(key) for column, key in wanted.items()}


def _is_building(tags: osmium.osm.TagList) -> bool:
    return tags.get("building", "no") != "no"


def _buildings(path: Path) -> Iterator[Row]:
    wkb = osmium.geom.WKBFactory()
    # Ways are many, so a way's fate is settled when it is seen: a closed way whose nodes all have
    # locations becomes an area, any other cannot. Relations are few; they wait for their area.
    waiting: dict[int, Row] = {}
    assembled: set[int] = set()
    processor = (
        osmium.FileProcessor(str(path))
        .with_areas(KeyFilter("building"))
        .with_filter(EntityFilter(osmium.osm.WAY | osmium.osm.RELATION | osmium.osm.AREA))
        .with_filter(KeyFilter("building"))
    )
    for obj in processor:
        if not _is_building(obj.tags):
            continue
        if isinstance(obj, osmium.osm.Area):
            kind = "way" if obj.from_way() else "relation"
            if kind == "relation":
                assembled.add(obj.orig_id())
                waiting.pop(obj.orig_id(), None)
            yield {
                "osm_type": kind,
                "osm_id": obj.orig_id(),
                **_tags(obj.tags, _BUILDING_TAGS),
                GEOMETRY: _or_none(wkb.create_multipolygon, obj),
            }
        elif isinstance(obj, osmium.osm.Way):
            if not (obj.is_closed() and all(n.location.valid() for n in obj.nodes)):
                yield {"osm_type": "way", "osm_id": obj.id, **_tags(obj.tags, _BUILDING_TAGS), GEOMETRY: None}
        elif (
            isinstance(obj, osmium.osm.Relation)
            and obj.tags.get("type") in ("multipolygon", "boundary")
            and obj.id not in assembled
        ):
            waiting[obj.id] = {
                "osm_type": "relation",
                "osm_id": obj.id,
                **_tags(obj.tags, _BUILDING_TAGS),
            }
    for row in waiting.values():  # multipolygons osmium could not assemble
        yield {**row, GEOMETRY: None}


def _roads(path: Path) -> Iterator[Row]:
    wkb = osmium.geom.WKBFactory()
    processor = (
        osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(EntityFilter(osmium.osm.WAY))
        .with_filter(KeyFilter("highway"))
    )
    for way in processor:
        if not isinstance(way, osmium.osm.Way):
            continue
        if all(n.location.valid() for n in way.nodes):
            geometry = _or_none(wkb.create_linestring, way)
        else:
            geometry = _clipped(way)
        yield {"osm_type": "way", "osm_id": way.id, **_tags(way.tags, _ROAD_TAGS), GEOMETRY: geometry}


def _pois(path: Path) -> Iterator[Row]:
    wkb = osmium.geom.WKBFactory()
    processor = osmium.FileProcessor(str(path), osmium.osm.NODE).with_filter(KeyFilter(*_POI_KEYS))
    for node in processor:
        if not isinstance(node, osmium.osm.Node):
            continue
        key = next(k for k in _POI_KEYS if k in node.tags)
        yield {
            "osm_type": "node",
            "osm_id": node.id,
            "kind": f"{key}={node.tags[key]}",
            "name": node.tags.get("name"),
            GEOMETRY: _or_none(wkb.create_point, node),
        }


def _clipped(way: osmium.osm.Way) -> bytes | None:
    """The parts of a way that lie in the extract: each run of nodes that have locations.

    An extract keeps a border-crossing way but not its outside nodes; joining the inside runs
    would draw a chord the road does not take, so they stay separate lines.
    """
    runs: list[list[tuple[float, float]]] = [[]]
    for node in way.nodes:
        if node.location.valid():
            runs[-1].append((node.location.lon, node.location.lat))
        elif runs[-1]:
            runs.append([])
    parts = [shapely.LineString(r) for r in runs if len(r) >= 2]
    if not parts:
        return None
    geometry = parts[0] if len(parts) == 1 else shapely.MultiLineString(parts)
    return bytes(shapely.to_wkb(geometry, flavor="iso"))


def _or_none(make: Callable[[Any], str], obj: Any) -> bytes | None:
    """WKB bytes from osmium's hex WKB, or None where the geometry cannot be built."""
    try:
        return bytes.fromhex(make(obj))
    except (osmium.InvalidLocationError, RuntimeError):
        return None


register(OsmReader())
