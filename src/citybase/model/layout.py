"""How a declared dataset is laid out as a table: its fields, then the platform's own columns.

Every located row carries `lon`/`lat` (WGS 84; for areas a point on the surface) and one place key
per city level plus an H3 cell, so that a question about a place is a key lookup, not a spatial join.
Areas keep their shape as `geom` (WKB) with a bounding box, as GeoParquet's bbox covering does.
Provenance: `_batch` (the ingest batch, also in the ledger), `_line` (row in the source), and
`_ingested_at`. All times are UTC.
"""

from __future__ import annotations

import pyarrow as pa

from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldType, Kind

PLACE_KEYS: tuple[str, ...] = tuple(level.value for level in Level)
H3 = "h3"
BATCH, LINE, INGESTED_AT = "_batch", "_line", "_ingested_at"

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.string: pa.string(),
    FieldType.int: pa.int64(),
    FieldType.float: pa.float64(),
    FieldType.bool: pa.bool_(),
    FieldType.timestamp: pa.timestamp("us"),
    FieldType.date: pa.date32(),
    FieldType.json: pa.string(),
}

SQL_TYPES: dict[FieldType, str] = {
    FieldType.string: "VARCHAR",
    FieldType.int: "BIGINT",
    FieldType.float: "DOUBLE",
    FieldType.bool: "BOOLEAN",
    FieldType.timestamp: "TIMESTAMP",
    FieldType.date: "DATE",
    FieldType.json: "VARCHAR",
}


def stores_shape(spec: DatasetSpec) -> bool:
    """Areas keep their geometry; point datasets keep only lon/lat."""
    return spec.kind is Kind.areas


def value_fields(spec: DatasetSpec) -> list[str]:
    """Declared fields stored under their own name (geometry source fields become lon/lat/geom)."""
    geo = spec.geometry
    skip = {geo.lon, geo.lat, geo.field} if geo else set()
    return [f.name for f in spec.fields if f.name not in skip]


def stored_columns(spec: DatasetSpec) -> list[tuple[str, pa.DataType, str]]:
    """(name, Arrow type, SQL type) of every column of the dataset's lake table, in order."""
    cols = [
        (f.name, ARROW_TYPES[f.type], SQL_TYPES[f.type]) for f in spec.fields if f.name in value_fields(spec)
    ]
    if spec.located or spec.address_field:
        cols += [("lon", pa.float64(), "DOUBLE"), ("lat", pa.float64(), "DOUBLE")]
    if stores_shape(spec):
        cols += [("geom", pa.binary(), "GEOMETRY")]
        cols += [(c, pa.float64(), "DOUBLE") for c in ("xmin", "ymin", "xmax", "ymax")]
    if spec.located or spec.address_field:
        cols += [(k, pa.string(), "VARCHAR") for k in PLACE_KEYS]
        cols += [(H3, pa.uint64(), "UBIGINT")]
    cols += [
        (BATCH, pa.string(), "VARCHAR"),
        (LINE, pa.int64(), "BIGINT"),
        (INGESTED_AT, pa.timestamp("us"), "TIMESTAMP"),
    ]
    return cols


def stored_schema(spec: DatasetSpec) -> pa.Schema:
    return pa.schema([(n, t) for n, t, _ in stored_columns(spec)])


#: Rejected rows, one per (row, field) finding, with the whole raw row kept as JSON.
QUARANTINE_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("dataset", pa.string(), "VARCHAR"),
    ("batch", pa.string(), "VARCHAR"),
    ("source", pa.string(), "VARCHAR"),
    ("line", pa.int64(), "BIGINT"),
    ("field", pa.string(), "VARCHAR"),
    ("value", pa.string(), "VARCHAR"),
    ("reason", pa.string(), "VARCHAR"),
    ("raw", pa.string(), "VARCHAR"),  # a rejected row is kept, not lost
    ("quarantined_at", pa.timestamp("us"), "TIMESTAMP"),
]
