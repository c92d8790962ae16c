"""What the platform fuses: which lake datasets feed which entity type, and how their columns map.

A city declares it once (YAML or a dict), next to its dataset declarations:

```yaml
addresses:                       # what Chinese addresses are parsed and geocoded against
  province: {code: "11", name: 北京市}   # or divisions: <folder of the national table>
  default: "11"
  reference: {dataset: housing_buildings}   # standard addresses with lon/lat, from the lake
types:
  - rules: {entity_type: person, id_prefix: P, fields: [...], blocking: [...]}  # or a rules file
    ngsi_type: Person            # NGSI-LD type (Smart Data Models names where they exist)
    feeds:
      - {dataset: ps_residents}                # rule field = dataset column where names agree
      - dataset: civil_assistance
        fields: {name: applicant_name, id_number: id_card_no, address: home_address}
    links:
      - {field: address, to: building, relation: livesIn}
```

Checked when declared against the lake: a feed's dataset, its record id and every column it maps
must exist, so a typo fails now and not in the maintainer thread an hour later.

>>> d = FusionDeclaration.model_validate({"types": [{"rules": {"entity_type": "person",
...     "fields": [{"name": "name", "kind": "person_name"}], "blocking": [["name"]]},
...     "feeds": [{"dataset": "residents"}]}]})
>>> d.types[0].ngsi, d.types[0].feeds[0].column("name")
('Person', 'name')
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citybase.errors import DeclarationError
from citybase.fusion.rules import MatchRules, YamlModel
from citybase.model.dataset import DatasetSpec

#: NGSI-LD types for the usual entity types (FIWARE Smart Data Models where one exists).
NGSI_TYPES = {"person": "Person", "enterprise": "Organization", "building": "Building", "device": "Device"}


class Feed(BaseModel):
    """One lake dataset feeding an entity type: its record id and rule field -> column map."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    record_id: str = "record_id"
    #: Rule column (a field, or a geo field's lon/lat column) -> the dataset's column. Unmapped
    #: rule columns read the column of the same name, or nothing where the dataset has none.
    fields: dict[str, str] = Field(default_factory=dict)

    def column(self, rule_column: str) -> str:
        return self.fields.get(rule_column, rule_column)


class LinkSpec(BaseModel):
    """Entity -> entity links from an address field (a person livesIn the building at it)."""

    model_config = ConfigDict(extra="forbid")

    field: str  # an address field of this type's rules
    to: str  # the target entity type
    relation: str  # the NGSI-LD Relationship name: livesIn, registeredAt, installedOn...
    target_field: str | None = None  # also match the target's own address key on this field


class EntityTypeSpec(BaseModel):
    """An entity type the platform keeps: its matching rules, feeds, NGSI-LD type and links."""

    model_config = ConfigDict(extra="forbid")

    rules: MatchRules
    feeds: Annotated[list[Feed], Field(min_length=1)]
    ngsi_type: str | None = None
    links: list[LinkSpec] = Field(default_factory=list)
    #: The field whose geocoded point locates an entity (default: the first geo, else address field).
    location: str | None = None

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_file(cls, v: Any) -> Any:
        """A rules file (a path ending .yaml / .yml) or YAML text; a mapping is validated as is."""
        if not isinstance(v, str | Path):
            return v
        try:
            return MatchRules.from_yaml(v).model_dump()
        except OSError as e:
            raise ValueError(f"cannot read the rules file {v}: {e.strerror}") from e

    @model_validator(mode="after")
    def _consistent(self) -> EntityTypeSpec:
        names = [f.dataset for f in self.feeds]
        if len(set(names)) != len(names):
            raise ValueError("a dataset feeds an entity type once")
        kinds = {f.name: f.kind for f in self.rules.fields}
        for link in self.links:
            if kinds.get(link.field) != "address":
                raise ValueError(f"link field {link.field!r} is not an address field of the rules")
        if self.location is not None and kinds.get(self.location) not in ("address", "geo"):
            raise ValueError(f"location {self.location!r} is not an address or geo field of the rules")
        return self

    @property
    def entity_type(self) -> str:
        return self.rules.entity_type

    @property
    def ngsi(self) -> str:
        return self.ngsi_type or NGSI_TYPES.get(self.entity_type, self.entity_type.title().replace("_", ""))

    @property
    def location_field(self) -> str | None:
        if self.location is not None:
            return self.location
        for kind in ("geo", "address"):
            for f in self.rules.fields:
                if f.kind == kind:
                    return f.name
        return None

    def rule_columns(self) -> list[tuple[str, bool]]:
        """(column the rules read, is numeric) - fields, geo lon/lat columns, the recency column."""
        out: list[tuple[str, bool]] = []
        for f in self.rules.fields:
            if f.kind == "geo":
                out += [(c, True) for c in (f.lon, f.lat) if c]
            else:
                out.append((f.name, False))
        if self.rules.recency and self.rules.recency not in {c for c, _ in out}:
            out.append((self.rules.recency, False))
        return out

    def check(self, specs: dict[str, DatasetSpec]) -> None:
        """Every feed against the lake's declarations; DeclarationError names what is wrong."""
        for feed in self.feeds:
            spec = specs.get(feed.dataset)
            where = f"{self.entity_type} feed {feed.dataset!r}"
            if spec is None:
                raise DeclarationError(f"{where}: no such dataset in the lake")
            declared = {f.name for f in spec.fields}
            if feed.record_id not in declared:
                raise DeclarationError(f"{where}: no record id column {feed.record_id!r}")
            rule_cols = {c for c, _ in self.rule_columns()}
            for rule_col, col in feed.fields.items():
                if rule_col not in rule_cols:
                    raise DeclarationError(f"{where}: {rule_col!r} is not a column the rules read")
                if col not in declared:
                    raise DeclarationError(f"{where}: dataset has no column {col!r} (for {rule_col!r})")


class ReferenceSpec(BaseModel):
    """The lake dataset of standard addresses with coordinates (the housing register)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    address: str = "address"
    name: str | None = "building_name"
    lon: str = "longitude"
    lat: str = "latitude"
    record_id: str = "record_id"


class ProvinceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    name: str


class AddressSpec(BaseModel):
    """Divisions (national table and/or the province) overlaid with the city model's districts and
    streets, and the reference that geocodes addresses to buildings."""

    model_config = ConfigDict(extra="forbid")

    divisions: Path | None = None
    province: ProvinceSpec | None = None
    default: str | None = None
    reference: ReferenceSpec | None = None


class FusionDeclaration(YamlModel):
    """Everything the platform fuses."""

    model_config = ConfigDict(extra="forbid")

    addresses: AddressSpec | None = None
    types: list[EntityTypeSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> FusionDeclaration:
        names = [t.entity_type for t in self.types]
        if len(set(names)) != len(names):
            raise ValueError("entity types must be unique")
        ngsi = [t.ngsi for t in self.types]
        if len(set(ngsi)) != len(ngsi):
            raise ValueError("NGSI-LD types must be unique")
        known = set(names)
        for t in self.types:
            for link in t.links:
                if link.to not in known:
                    raise ValueError(f"{t.entity_type} links to {link.to!r}, which is not declared")
        return self

    def type(self, entity_type: str) -> EntityTypeSpec:
        for t in self.types:
            if t.entity_type == entity_type:
                return t
        from citybase.errors import NotFound

        raise NotFound(f"no declared entity type {entity_type!r}")

    def merged(self, other: FusionDeclaration) -> FusionDeclaration:
        """This declaration with `other`'s addresses (if given) and types (replacing same-named)."""
        types = {t.entity_type: t for t in self.types}
        types.update({t.entity_type: t for t in other.types})
        return FusionDeclaration(addresses=other.addresses or self.addresses, types=list(types.values()))

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> FusionDeclaration:
        """From a YAML file, YAML text or a dict; errors name the file and the place."""
        where = "fusion declaration"
        data: Any = source
        if isinstance(source, Path) or (isinstance(source, str) and source.endswith((".yaml", ".yml"))):
            where = str(source)
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        elif isinstance(source, str):
            data = yaml.safe_load(source)
        return cls.validated(data, where)
