"""The city declaration: which area layers make up its place hierarchy.

Every located row gets a key per layer (DESIGN.md "block data"): the administrative levels, the
management grid, the building it falls in, and an H3 cell.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citybase.errors import DeclarationError, invalid


class Level(StrEnum):
    """Place levels, coarse to fine; each becomes a place-key column of the same name."""

    district = "district"
    street = "street"
    community = "community"
    grid = "grid"
    building = "building"


#: Resolution of the stored H3 cell key (res 12: cells of about 300 m²; coarser ones are derived).
DEFAULT_H3_RESOLUTION = 12


class LayerSpec(BaseModel):
    """One area layer: a file of polygons and which of its fields hold code, name and parent."""

    model_config = ConfigDict(extra="forbid")

    level: Level
    file: str  # relative to the declaration's folder, or absolute
    code: str  # field holding the area's code (the place key)
    name: str | None = None
    parent: str | None = None  # field holding the code of the enclosing area one level up
    format: str | None = None  # reader name, when the file ending does not tell
    layer: str | None = None  # layer inside the file (GeoPackage, OSM: "buildings")


class CitySpec(BaseModel):
    """A city: its name, time zone, H3 resolution of the cell key, and its area layers."""

    model_config = ConfigDict(extra="forbid")

    name: str
    timezone: str = "Asia/Shanghai"
    h3_resolution: int = Field(default=DEFAULT_H3_RESOLUTION, ge=0, le=15)
    layers: list[LayerSpec] = Field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path) -> CitySpec:
        p = Path(path)
        try:
            data: Any = yaml.safe_load(p.read_text(encoding="utf-8"))
            spec = cls.model_validate(data)
        except (OSError, yaml.YAMLError) as e:
            raise DeclarationError(f"{p}: cannot read city declaration: {e}") from e
        except ValidationError as e:
            raise invalid(str(p), "city declaration", e) from e
        # Layer files are relative to the declaration, so a city folder can move as a whole.
        for layer in spec.layers:
            if not Path(layer.file).is_absolute():
                layer.file = str((p.parent / layer.file).resolve())
        return spec
