"""Declared matching rules per entity type: which fields, how compared, how blocked, thresholds.

A city writes one rules file per entity type (person, enterprise, building) in YAML; they are
validated here so that a typo in a field kind fails at load time with the file and field named,
not in the middle of a million-record run.

>>> r = MatchRules.from_yaml('''
... entity_type: person
... fields:
...   - {name: name, kind: person_name}
...   - {name: id_number, kind: cn_id}
... blocking: [[id_number], [name__py]]
... ''')
>>> r.field("id_number").kind
'cn_id'
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from citybase.errors import invalid

Kind = Literal[
    "person_name",  # Chinese or latin person name: exact, pinyin, fuzzy pinyin
    "enterprise_name",  # firm name: exact, core (no region / legal form), fuzzy pinyin
    "text",  # latin free text: exact, fuzzy, token overlap
    "cn_id",  # resident identity number, checked (ISO 7064 MOD 11-2)
    "uscc",  # unified social credit code, checked (GB 32100)
    "phone",  # phone number, normalised (region: cn or nanp)
    "address",  # street address: Chinese (parsed, geocoded) or western (normalised)
    "geo",  # a point: lon/lat columns, distance bands
    "date",  # a date: exact or a one-character typo
    "exact",  # anything compared for equality only
    "code",  # short codes (postcodes, street numbers): exact or one edit
]
Probability = Annotated[float, Field(gt=0, lt=1)]
GoldenRule = Literal["most_frequent", "most_recent", "most_complete", "source_priority"]


class FieldRule(BaseModel):
    """One field compared between records."""

    model_config = ConfigDict(extra="forbid")

    name: str  # column in the records table (for geo: the name given to the comparison)
    kind: Kind
    lon: str | None = None  # geo: the longitude column
    lat: str | None = None
    region: Literal["cn", "nanp"] = "cn"  # phone numbering plan
    language: Literal["zh", "latin"] = "zh"  # address: parsed as Chinese or western
    term_frequency: bool = False  # common values (a popular surname) count for less
    exclusive: bool = False  # different values mean different entities (an ID; a site's house number)
    golden: GoldenRule = "most_frequent"

    @model_validator(mode="after")
    def _geo_columns(self) -> FieldRule:
        if self.kind == "geo" and not (self.lon and self.lat):
            raise ValueError(f"field {self.name!r}: a geo field needs lon and lat columns")
        return self


BlockingRule = list[str] | str  # column names all equal, or a SQL condition on l. and r.


class YamlModel(BaseModel):
    """A declaration written as YAML: validated with errors that name the file and the field."""

    @classmethod
    def validated(cls, data: Any, where: str) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise invalid(where, "declaration", e) from e

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_defaults=True), allow_unicode=True, sort_keys=False
        )


class MatchRules(YamlModel):
    """How records of one entity type are matched and scored (Fellegi-Sunter, trained unlabelled)."""

    model_config = ConfigDict(extra="forbid")

    entity_type: str
    id_prefix: str = "E"  # entity ids look like P-3f2a9c01d4e5 for id_prefix P
    record_id: str = "record_id"  # unique within a source
    source: str | None = "source"  # which department's system the record came from
    fields: Annotated[list[FieldRule], Field(min_length=1)]
    blocking: Annotated[list[BlockingRule], Field(min_length=1)]  # candidate pairs: union of rules
    training_blocking: list[BlockingRule] | None = None  # EM passes; default: the blocking rules
    deterministic: list[BlockingRule] | None = None  # near-certain matches, to estimate the prior
    deterministic_recall: Probability = 0.7
    link_type: Literal["dedupe_only", "link_only", "link_and_dedupe"] = "dedupe_only"
    match_threshold: Probability = 0.9  # linked at or above
    review_threshold: Probability = 0.5  # reviewed between this and match_threshold
    u_max_pairs: Annotated[float, Field(gt=0)] = 1e6
    recency: str | None = None  # a date column: what "most_recent" orders by
    source_priority: list[str] = Field(default_factory=list)  # most trusted source first

    @model_validator(mode="after")
    def _thresholds(self) -> MatchRules:
        if self.review_threshold > self.match_threshold:
            raise ValueError("review_threshold must not be above match_threshold")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        return self

    def field(self, name: str) -> FieldRule:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def from_yaml(cls, source: str | Path) -> MatchRules:
        """Rules from a YAML file path or YAML text; errors name the file and the field."""
        where = "rules"
        if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            where = str(source)
            source = Path(source).read_text(encoding="utf-8")
        return cls.validated(yaml.safe_load(source), where)
