"""Dataset declarations written next to the data, and the bundle a generator hands to the writer.

Each generator builds its DatasetSpec with the same column names it writes, in the same function,
so declaration and data cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from citybase.model.dataset import DatasetSpec, FieldSpec, FieldType, Personal
from citybase.sim.scale import BadRow

Format = Literal["parquet", "csv", "geojson", "geoparquet"]


def F(name: str, type: str = "string", *, personal: str | None = None, **kw: Any) -> FieldSpec:
    """A declared field, shortly: F("pm25", "float", unit="µg/m³", min=0)."""
    return FieldSpec(name=name, type=FieldType(type), personal=Personal(personal) if personal else None, **kw)


def spec(**kw: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(kw)


@dataclass
class Output:
    """One dataset: its declaration, its rows, and where and how to write them."""

    spec: DatasetSpec
    table: pa.Table
    path: str  # relative to the output folder
    format: Format
    bad_rows: list[BadRow] = field(default_factory=list)
    geometry: Any = None  # shapely geometries (lon/lat) for geojson and geoparquet outputs


@dataclass
class Truth:
    """Ground truth rows of one dataset: record -> entity, and record field -> referenced entity."""

    records: pa.Table  # dataset, record_id, entity_type, entity_id
    links: pa.Table  # dataset, record_id, field, entity_type, entity_id


def truth(dataset: str, record_id: Any, entity_type: str, entity_id: Any) -> pa.Table:
    n = len(record_id)
    return pa.table(
        {
            "dataset": pa.array([dataset] * n, pa.string()),
            "record_id": pa.array(record_id, pa.string()),
            "entity_type": pa.array([entity_type] * n, pa.string()),
            "entity_id": pa.array(entity_id, pa.string()),
        }
    )


def link(dataset: str, record_id: Any, field_name: str, entity_type: str, entity_id: Any) -> pa.Table:
    t = truth(dataset, record_id, entity_type, entity_id)
    return t.add_column(2, "field", pa.array([field_name] * len(t), pa.string()))
