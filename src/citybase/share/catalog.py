"""The resource catalog: every dataset as a government data-resource entry.

An entry joins three sources: the department's declaration (`DatasetSpec`: provider, system,
fields with units and personal tags, sharing attribute, update cycle), what the provider adds
later in the metadata database (abstract, sharing conditions, open attribute, keywords, resource
code, the aggregate policy), and what the lake's statistics say (rows, bbox, time span, last
update; coverage.py). The catalog is public to every authenticated department — a consumer must
know what exists to ask for it — while rows stay behind grants.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Column, DateTime, Engine, String, Table, Text, delete, insert, select

from citybase.errors import InputError
from citybase.meta import METADATA, ensure
from citybase.model.dataset import DatasetSpec
from citybase.query.aggregate import time_zone
from citybase.share.coverage import Coverage, CoverageCache
from citybase.store.lake import Lake

SHARING = ("unconditional", "conditional", "not_shared")


class OpenAttribute(StrEnum):
    """开放属性: whether the public (not only departments) may have the data."""

    open = "open"  # 无条件开放
    conditional = "conditional"  # 有条件开放
    not_open = "not_open"  # 不予开放


class Grain(BaseModel):
    """One place level and one time bin: the only table exact aggregates are cut from."""

    model_config = ConfigDict(extra="forbid")

    #: district | street | community | grid | h3:<resolution>
    level: str = "district"
    #: A bin width like 1h, 1d, 1w, 1mo; None for datasets without time.
    every: str | None = "1d"
    #: The time zone whose clock the bins follow (IANA name; None: UTC), for exact and dp
    #: aggregates alike. The provider's choice, not the consumer's: UTC days and Beijing days of
    #: the same rows, subtracted, would reveal 8-hour slices.
    tz: str | None = None

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str | None) -> str | None:
        return None if tz is None else time_zone(tz)


class AggregatePolicy(BaseModel):
    """How a dataset may be used through aggregates (aggregates.py)."""

    model_config = ConfigDict(extra="forbid")

    #: Least number of distinct contributors behind a published cell.
    k: int = Field(default=5, ge=2)
    #: Field that says who a row is about (an object, a person); default: object field, then key.
    contributor: str | None = None
    #: The single grain of exact (unperturbed) aggregates.
    grain: Grain = Field(default_factory=Grain)
    #: A cell is also withheld when one contributor makes more than this share of its sum.
    dominance: float | None = Field(default=0.9, gt=0, le=1)
    #: Differential privacy: epsilon each consumer may spend on this dataset, in all.
    epsilon_budget: float = Field(default=1.0, ge=0)
    #: Differential privacy: the most cells one contributor is counted in, per query.
    max_cells: int = Field(default=4, ge=1)


class CatalogMeta(BaseModel):
    """What a provider adds to its declaration for the catalog."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = None
    abstract: str | None = None
    conditions: str = ""
    open: OpenAttribute = OpenAttribute.not_open
    keywords: list[str] = Field(default_factory=list)
    policy: AggregatePolicy = Field(default_factory=AggregatePolicy)


class DataItem(BaseModel):
    """信息项: one field as the catalog lists it."""

    name: str
    type: str
    unit: str | None = None
    description: str = ""
    personal: str | None = None


class CatalogEntry(BaseModel):
    """One data resource (信息资源) of the catalog."""

    name: str
    code: str
    title: str
    abstract: str
    provider: str
    provider_name: str
    system: str
    kind: str
    format: str
    items: list[DataItem]
    sharing: str
    conditions: str
    open: OpenAttribute
    update_cycle: str
    keywords: list[str]
    rows: int
    bbox: tuple[float, float, float, float] | None
    start: datetime | None
    end: datetime | None
    last_update: datetime | None
    personal: bool
    policy: AggregatePolicy


catalog_table = Table(
    "share_catalog",
    METADATA,
    Column("dataset", String(63), primary_key=True),
    Column("meta", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(63), nullable=False),
)


def resource_code(spec: DatasetSpec) -> str:
    """A stable resource code: provider/system, then a 6-digit number from the dataset's name.

    >>> from citybase.query.demo import AIR
    >>> resource_code(DatasetSpec.model_validate(AIR))
    'ecology/aq-455419'
    """
    return f"{spec.department}/{spec.system}-{zlib.crc32(spec.name.encode()) % 1_000_000:06d}"


def data_format(spec: DatasetSpec) -> str:
    return "GeoParquet" if spec.located or spec.address_field else "Parquet"


class Catalog:
    """Catalog entries of one platform: `Catalog(engine, lake, department_names)`."""

    def __init__(
        self, engine: Engine, lake: Lake, names: Callable[[], dict[str, str]], clock: Callable[[], datetime]
    ):
        self.engine, self.lake, self.names, self.clock = engine, lake, names, clock
        self.coverage = CoverageCache(lake)
        ensure(engine, catalog_table)

    # -- provider metadata --------------------------------------------------------------------

    def meta(self, dataset: str) -> CatalogMeta:
        return self.metas().get(dataset, CatalogMeta())

    def metas(self) -> dict[str, CatalogMeta]:
        with self.engine.connect() as c:
            rows = c.execute(select(catalog_table.c.dataset, catalog_table.c.meta)).all()
        return {r.dataset: CatalogMeta.model_validate_json(r.meta) for r in rows}

    def set_meta(self, dataset: str, meta: CatalogMeta, *, by: str) -> CatalogMeta:
        """Replace a dataset's catalog metadata (the caller checked that `by` may)."""
        spec = self.lake.spec(dataset)
        pol = meta.policy
        if pol.contributor is not None and pol.contributor not in {f.name for f in spec.fields}:
            raise InputError(f"contributor field {pol.contributor!r} is not a field of {dataset!r}")
        with self.engine.begin() as c:
            c.execute(delete(catalog_table).where(catalog_table.c.dataset == dataset))
            c.execute(
                insert(catalog_table).values(
                    dataset=dataset, meta=meta.model_dump_json(), updated_at=self.clock(), updated_by=by
                )
            )
        return meta

    # -- entries ------------------------------------------------------------------------------

    def entries(self) -> list[CatalogEntry]:
        """Every dataset's entry, by name."""
        specs, metas, cov, names = self.lake.datasets, self.metas(), self.coverage.get(), self.names()
        return [
            self._entry(specs[n], metas.get(n, CatalogMeta()), cov.get(n, Coverage()), names)
            for n in sorted(specs)
        ]

    def entry(self, dataset: str) -> CatalogEntry:
        spec = self.lake.spec(dataset)
        cov = self.coverage.get().get(dataset, Coverage())
        return self._entry(spec, self.meta(dataset), cov, self.names())

    @staticmethod
    def _entry(spec: DatasetSpec, meta: CatalogMeta, cov: Coverage, names: dict[str, str]) -> CatalogEntry:
        items = [
            DataItem(
                name=f.name,
                type=f.type.value,
                unit=f.unit,
                description=f.description,
                personal=f.personal.value if f.personal else None,
            )
            for f in spec.fields
        ]
        return CatalogEntry(
            name=spec.name,
            code=meta.code or resource_code(spec),
            title=spec.title or spec.name,
            abstract=meta.abstract if meta.abstract is not None else spec.description,
            provider=spec.department,
            provider_name=names.get(spec.department, spec.department),
            system=spec.system,
            kind=spec.kind.value,
            format=data_format(spec),
            items=items,
            sharing=spec.sharing,
            conditions=meta.conditions,
            open=meta.open,
            update_cycle=spec.update_cycle,
            keywords=meta.keywords,
            rows=cov.rows,
            bbox=cov.bbox,
            start=cov.start,
            end=cov.end,
            last_update=cov.last_update,
            personal=any(i.personal for i in items),
            policy=meta.policy,
        )
