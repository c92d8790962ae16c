"""Declared datasets: what a department says it sends, before it sends anything.

A declaration is the contract between a department's system and the city: name, owner, kind,
schema (types, units, personal-data tags), which field carries time and which carries place.
Departments write it as YAML or JSON; the Python API builds the same object.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citybase.errors import DeclarationError, invalid

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: Column names the platform adds to every stored row; a declared field may not use them.
RESERVED_COLUMNS = frozenset(
    {
        "lon",
        "lat",
        "geom",
        "xmin",
        "ymin",
        "xmax",
        "ymax",
        "h3",
        "district",
        "street",
        "community",
        "grid",
        "building",
        "_batch",
        "_line",
        "_ingested_at",
        "_tile",
    }
)


class Kind(StrEnum):
    """The data kinds of the city (DESIGN.md): they decide the storage layout and the queries."""

    points = "points"  # located events and objects
    tracks = "tracks"  # positions of a moving object over time
    series = "series"  # readings of a fixed sensor over time
    areas = "areas"  # polygons and lines
    records = "records"  # department tables, possibly with an address


class FieldType(StrEnum):
    string = "string"
    int = "int"
    float = "float"
    bool = "bool"
    timestamp = "timestamp"
    date = "date"
    json = "json"


class Personal(StrEnum):
    """Personal-data classes: each has a default mask when shared (see the share box)."""

    name = "name"
    id_number = "id_number"
    phone = "phone"
    address = "address"
    email = "email"
    other = "other"


class FieldSpec(BaseModel):
    """One declared field of a dataset."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: FieldType = FieldType.string
    description: str = ""
    unit: str | None = None
    required: bool = False
    personal: Personal | None = None
    min: float | None = None
    max: float | None = None
    enum: list[str] | None = None
    #: Name of the column in the source file, when it differs (the column mapping).
    source: str | None = None
    #: strptime format for timestamps/dates given as text in an unusual form.
    format: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"field name {v!r} must be lower_snake_case ASCII, at most 63 characters")
        return v


class GeometrySpec(BaseModel):
    """Where a row's place comes from: longitude/latitude fields, or one geometry field."""

    model_config = ConfigDict(extra="forbid")

    lon: str | None = None
    lat: str | None = None
    field: str | None = None
    encoding: str = "wkb"  # wkb | wkt | geojson, for `field`
    crs: str = "EPSG:4326"

    @model_validator(mode="after")
    def _one_way(self) -> GeometrySpec:
        has_xy = self.lon is not None or self.lat is not None
        if has_xy and (self.lon is None or self.lat is None):
            raise ValueError("geometry needs both lon and lat")
        if has_xy == (self.field is not None):
            raise ValueError("geometry takes either lon+lat or field, not both and not neither")
        if self.encoding not in ("wkb", "wkt", "geojson"):
            raise ValueError(f"geometry encoding {self.encoding!r} is not one of wkb, wkt, geojson")
        return self


class DatasetSpec(BaseModel):
    """A dataset as its department declares it.

    >>> spec = DatasetSpec(name="hotline", department="citizen", system="12345", kind="points",
    ...     time_field="reported_at", geometry={"lon": "lng", "lat": "lat"},
    ...     fields=[{"name": "reported_at", "type": "timestamp"}, {"name": "lng", "type": "float"},
    ...             {"name": "lat", "type": "float"}])
    >>> spec.field("lng").type.value
    'float'
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    department: str
    system: str
    kind: Kind
    fields: list[FieldSpec] = Field(min_length=1)
    time_field: str | None = None
    geometry: GeometrySpec | None = None
    address_field: str | None = None
    #: The moving object (tracks) or the sensor (series) each row belongs to.
    object_field: str | None = None
    #: Declared key: a row whose key is already stored is a duplicate, not a new row.
    key: list[str] = Field(default_factory=list)
    #: Sharing attributes of the government resource catalogue (used by the share box).
    sharing: str = "conditional"  # unconditional | conditional | not_shared
    update_cycle: str = "real-time"
    #: Time partition of the lake table: coarser for slow datasets, `day` for GPS-scale ones.
    partition: str = "month"  # day | month | year | none
    #: Spatial partition: each time partition's files are split by the H3 cell of this resolution
    #: that holds the row, so that a place query opens the files of its few cells, not files that
    #: each cover the whole city (docs/adr/0006). For datasets with millions of rows per time
    #: partition; None (the default) keeps one run of files per time partition.
    partition_cells: int | None = Field(default=None, ge=0, le=10)
    #: Keep a second copy of the rows sorted by object and time, built by maintenance, so that one
    #: object's track reads a few row groups instead of its whole time partition (docs/adr/0010).
    #: Applies where `object_field` and `time_field` are declared; doubles the dataset's storage.
    copy_by_object: bool = True

    @field_validator("name", "department", "system")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_\-]{0,62}$", v):
            raise ValueError(f"{v!r} must be lowercase ASCII letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        names = [f.name for f in self.fields]
        geo_xy = {self.geometry.lon, self.geometry.lat} if self.geometry else set()
        reserved = sorted(n for n in names if n in RESERVED_COLUMNS and n not in geo_xy)
        if reserved:
            raise ValueError(f"fields {reserved} are reserved for the platform's own columns; rename them")
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"fields declared twice: {sorted(dupes)}")
        if self.partition not in ("day", "month", "year", "none"):
            raise ValueError(f"partition {self.partition!r} is not one of day, month, year, none")
        if self.partition_cells is not None and self.geometry is None and self.address_field is None:
            raise ValueError("partition_cells needs a geometry or an address field (rows with a position)")
        if "-" in self.name:
            raise ValueError(f"dataset name {self.name!r} must use '_' not '-' (it becomes a table)")

        def need(attr: str, value: str | None, types: tuple[FieldType, ...] | None = None) -> None:
            if value is None:
                return
            if value not in names:
                raise ValueError(f"{attr} {value!r} is not a declared field")
            if types and self.field(value).type not in types:
                allowed = ", ".join(t.value for t in types)
                raise ValueError(f"{attr} {value!r} must have type {allowed}")

        need("time_field", self.time_field, (FieldType.timestamp, FieldType.date))
        need("address_field", self.address_field, (FieldType.string,))
        need("object_field", self.object_field)
        for k in self.key:
            need("key", k)
        if self.geometry is not None:
            need("geometry.lon", self.geometry.lon, (FieldType.float, FieldType.int))
            need("geometry.lat", self.geometry.lat, (FieldType.float, FieldType.int))
            need("geometry.field", self.geometry.field, (FieldType.string,))
        if self.kind in (Kind.tracks, Kind.series) and (self.time_field is None or self.object_field is None):
            raise ValueError(f"a {self.kind.value} dataset needs time_field and object_field")
        if self.kind in (Kind.points, Kind.tracks) and self.geometry is None:
            raise ValueError(f"a {self.kind.value} dataset needs a geometry")
        if self.kind is Kind.areas and (self.geometry is None or self.geometry.field is None):
            raise ValueError("an areas dataset needs geometry.field (polygons and lines)")
        return self

    # -- lookups ------------------------------------------------------------------------------

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def located(self) -> bool:
        """True when rows carry a place (coordinates or a geometry) on ingest."""
        return self.geometry is not None

    @property
    def personal_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.personal is not None]

    # -- files --------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        """Read a declaration from YAML or JSON; errors name the file and the field."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            data: Any = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise DeclarationError(f"{p}: cannot read declaration: {e}") from e
        return cls.from_dict(data, where=str(p))

    @classmethod
    def from_dict(cls, data: Any, where: str = "<dict>") -> DatasetSpec:
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise invalid(where, "dataset declaration", e) from e

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True
        )
