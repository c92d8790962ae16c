"""What a reader gets back about entities: typed answers, shared by the Python API, CLI and HTTP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class EntitySummary(BaseModel):
    """One entity in a list: its golden record as the reader may see it."""

    id: str
    type: str
    ngsi_id: str = Field(description="The entity's id in the NGSI-LD API.")
    golden: dict[str, str] = Field(description="Best value per field, from records the reader may read.")
    sources: list[str] = Field(description="Datasets of the member records the reader may read.")
    records: int = Field(description="Member records the reader may read.")


class EntityPage(BaseModel):
    items: list[EntitySummary]
    total: int
    limit: int
    offset: int


class GoldenValue(BaseModel):
    """A golden field's value and the record it came from."""

    value: str
    dataset: str
    record: str


class EntityLink(BaseModel):
    """A link to another entity (`out`: this entity livesIn it; `in`: it livesIn this one)."""

    relation: str
    direction: Literal["out", "in"]
    entity: str
    entity_type: str
    ngsi_id: str
    records: int = Field(description="Records the reader may read that support the link.")


class Location(BaseModel):
    lon: float
    lat: float
    records: int = Field(description="Geocoded records the point is the median of.")


class EntityProfile(BaseModel):
    """Everything about one entity the reader may see."""

    id: str
    type: str
    ngsi_id: str
    golden: dict[str, GoldenValue]
    records: list[dict[str, Any]] = Field(
        description="Member records as the reader reads them: dataset, record_id, values (masked "
        "where the grant masks)."
    )
    links: list[EntityLink]
    location: Location | None
    places: dict[str, str] = Field(
        description="Place keys of the location (district, street, grid, building, h3)."
    )
    resolved_at: float = Field(
        description="When the entity store was last written (seconds since the epoch)."
    )
