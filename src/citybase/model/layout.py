"""How a declared dataset is laid out as a table: its fields, then the platform's own columns.

Every located row carries `lon`/`lat` (WGS 84; for areas a point on the surface) and one place key
per city level plus an H3 cell, so that a question about a place is a key lookup, not a spatial join.
Areas keep their shape as `geom` (WKB) with a bounding box, as GeoParquet's bbox covering does.
Provenance: `_batch` (the ingest batch, also in the ledger), `_line` (row in the source), and
`_ingested_at`. All times are UTC.

A personal text field also has a *shadow column*, `<field>__masked`: its masked form, computed once
when the row is written (gateway/conform.py, share/masking.py), so that a reader who may only see it
masked reads a column instead of computing the mask on every query (docs/adr/0005). Shadow columns
are in the table (`table_columns`) but not among the columns a reader sees (`stored_columns`).
"""

from __future__ import annotations

import pyarrow as pa

from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldType, Kind

PLACE_KEYS: tuple[str, ...] = tuple(level.value for level in Level)
H3 = "h3"
BATCH, LINE, INGESTED_AT = "_batch", "_line", "_ingested_at"
#: The spatial partition key of a dataset declared with `partition_cells`: a column of the lake
#: table only, computed from `h3` when rows are written (store/lake.py), never seen by readers.
TILE = "_tile"

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
    """(name, Arrow type, SQL type) of every column a reader of the dataset's table sees, in order
    (the table also holds the shadow columns: `table_columns`)."""
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


#: The suffix of a shadow column's name.
SHADOW_SUFFIX = "__masked"
_TEXT = (FieldType.string, FieldType.json)


def shadow_columns(spec: DatasetSpec) -> dict[str, str]:
    """Personal text field -> its shadow column, for the fields stored under their own name.

    A name that a declared field or a stored column already has is not used (that field's mask is
    then computed at read time).

    >>> spec = DatasetSpec(name="v", department="h", system="s", kind="records", fields=[
    ...     {"name": "patient", "personal": "name"}, {"name": "born", "type": "date", "personal": "other"},
    ...     {"name": "cost", "type": "float"}])
    >>> shadow_columns(spec)
    {'patient': 'patient__masked'}
    """
    taken = {f.name for f in spec.fields} | {n for n, _, _ in stored_columns(spec)}
    values = set(value_fields(spec))
    out: dict[str, str] = {}
    for f in spec.fields:
        shadow = f.name + SHADOW_SUFFIX
        if f.personal is not None and f.type in _TEXT and f.name in values and shadow not in taken:
            out[f.name] = shadow
    return out


def table_columns(spec: DatasetSpec) -> list[tuple[str, pa.DataType, str]]:
    """(name, Arrow type, SQL type) of every column of the dataset's lake table: the stored columns,
    then the shadow columns."""
    return stored_columns(spec) + [(s, pa.string(), "VARCHAR") for s in shadow_columns(spec).values()]


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
