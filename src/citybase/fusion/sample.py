"""The sample city's department records (citybase.sim) as fusion inputs, with the city's rules.

Each department names its columns its own way; here they are mapped onto one schema per entity
type (person, enterprise, building), with `source` and `record_id` kept for provenance. The
rules are the ones a real city would start from for these registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from citybase.fusion.divisions import Division, Divisions, Level
from citybase.fusion.features import AddressContext
from citybase.fusion.geocode import Reference
from citybase.fusion.rules import MatchRules

if TYPE_CHECKING:
    from citybase.fusion.resolve import Resolution

PERSON_RULES = MatchRules.model_validate(
    {
        "entity_type": "person",
        "id_prefix": "P",
        "fields": [
            {"name": "name", "kind": "person_name"},
            {"name": "id_number", "kind": "cn_id", "exclusive": True},
            {"name": "phone", "kind": "phone"},
            {"name": "address", "kind": "address"},
            {"name": "birth_date", "kind": "date"},
        ],
        "blocking": [["id_number"], ["phone"], ["name_py", "address_key"]],
        "training_blocking": [["name_py", "address_key"], ["id_number"]],
        "deterministic": [["id_number"], ["name", "phone"]],
        "deterministic_recall": 0.9,
        "u_max_pairs": 5e5,
        "source_priority": ["ps_residents", "hrss_insured", "civil_assistance"],
    }
)

ENTERPRISE_RULES = MatchRules.model_validate(
    {
        "entity_type": "enterprise",
        "id_prefix": "E",
        "fields": [
            {"name": "name", "kind": "enterprise_name"},
            {"name": "uscc", "kind": "uscc", "exclusive": True},
            {"name": "legal_person", "kind": "person_name"},
            {"name": "address", "kind": "address"},
        ],
        "blocking": [["uscc"], ["name_core"], ["name_py"], ["address_key", "legal_person_py"]],
        "training_blocking": [["name_core"], ["uscc"], ["address_key", "legal_person_py"]],
        "deterministic": [["uscc"]],
        "deterministic_recall": 0.8,
        "source_priority": ["market_enterprises", "eco_pollutant_permits"],
    }
)


BUILDING_RULES = MatchRules.model_validate(
    {
        "entity_type": "building",
        "id_prefix": "B",
        "fields": [
            {"name": "name", "kind": "text"},
            {"name": "address", "kind": "address"},
            {"name": "point", "kind": "geo", "lon": "longitude", "lat": "latitude"},
        ],
        "blocking": [["address_key"], ["name"]],
        "deterministic": [["address_key", "name"]],
    }
)


def _read(folder: Path, rel: str) -> pa.Table:
    p = folder / rel
    if p.suffix == ".csv":
        return pacsv.read_csv(
            p,
            convert_options=pacsv.ConvertOptions(
                column_types={"id_card_no": pa.string(), "contact_phone": pa.string(), "uscc": pa.string()},
                strings_can_be_null=True,
            ),
        )
    return pq.read_table(p)


def _unify(t: pa.Table, source: str, cols: dict[str, str | None]) -> pa.Table:
    out = {"source": pa.array([source] * t.num_rows, pa.string())}
    for new, old in cols.items():
        out[new] = t[old].cast(pa.string()) if old else pa.nulls(t.num_rows, pa.string())
    return pa.table(out)


def people(folder: Path) -> pa.Table:
    """Person records of the three departments that hold them, on one schema."""
    cols = {
        "record_id": "record_id",
        "name": "name",
        "id_number": "id_number",
        "phone": "phone",
        "address": "address",
    }
    ps = _unify(
        _read(folder, "data/ps_residents.parquet"), "ps_residents", {**cols, "birth_date": "birth_date"}
    )
    hr = _unify(_read(folder, "data/hrss_insured.parquet"), "hrss_insured", {**cols, "birth_date": None})
    civ = _unify(
        _read(folder, "data/civil_assistance.csv"),
        "civil_assistance",
        {
            "record_id": "record_id",
            "name": "applicant_name",
            "id_number": "id_card_no",
            "phone": "contact_phone",
            "address": "home_address",
            "birth_date": None,
        },
    )
    return pa.concat_tables([ps, hr, civ])


def enterprises(folder: Path) -> pa.Table:
    m = _unify(
        _read(folder, "data/market_enterprises.parquet"),
        "market_enterprises",
        {
            "record_id": "record_id",
            "name": "enterprise_name",
            "uscc": "uscc",
            "legal_person": "legal_person",
            "address": "registered_address",
        },
    )
    e = _unify(
        _read(folder, "data/eco_pollutant_permits.csv"),
        "eco_pollutant_permits",
        {
            "record_id": "record_id",
            "name": "unit_name",
            "uscc": "uscc",
            "legal_person": "legal_person",
            "address": "address",
        },
    )
    return pa.concat_tables([m, e])


def building_records(folder: Path) -> pa.Table:
    t = _read(folder, "data/housing_buildings.parquet")
    u = _unify(
        t, "housing_buildings", {"record_id": "record_id", "name": "building_name", "address": "address"}
    )
    return u.append_column("longitude", t["longitude"]).append_column("latitude", t["latitude"])


def buildings(folder: Path, addresses: AddressContext | None = None) -> Resolution:
    """The housing register as building entities (one department: a dedupe of its own rows)."""
    from citybase.fusion.resolve import resolve

    return resolve(building_records(folder), BUILDING_RULES, addresses=addresses or address_context(folder))


def truth_links(folder: Path) -> dict[str, str]:
    """uid -> true building code of the record's address (the sample's ground truth of links)."""
    t = pq.read_table(folder / "truth" / "links.parquet")
    return {
        f"{d}|{r}": e
        for d, r, e, et in zip(
            t["dataset"].to_pylist(),
            t["record_id"].to_pylist(),
            t["entity_id"].to_pylist(),
            t["entity_type"].to_pylist(),
            strict=True,
        )
        if et == "building"
    }


def truth(folder: Path) -> dict[str, str]:
    """uid (source|record_id) -> true entity id."""
    t = pq.read_table(folder / "truth" / "records.parquet")
    return {
        f"{d}|{r}": e
        for d, r, e in zip(
            t["dataset"].to_pylist(), t["record_id"].to_pylist(), t["entity_id"].to_pylist(), strict=True
        )
    }


def address_context(folder: Path, divisions: Divisions | None = None) -> AddressContext:
    """Divisions (national table overlaid with the city's layers) and the housing register as reference."""
    own: list[Division] = []
    layers: tuple[tuple[str, Level], ...] = (
        ("city/districts.parquet", "district"),
        ("city/streets.parquet", "street"),
    )
    for rel, level in layers:
        t = pq.read_table(folder / rel, columns=["code", "name"])
        own += [
            Division(c, n, level) for c, n in zip(t["code"].to_pylist(), t["name"].to_pylist(), strict=True)
        ]
    base = divisions or Divisions([Division("11", "北京市", "province")])
    d = base.overlay(own)
    ref = Reference.build(pq.read_table(folder / "data" / "housing_buildings.parquet"), d, default="11")
    return AddressContext(d, ref, default="11")


def _authoritative(rules: MatchRules) -> dict[str, Any]:
    """The rules with every golden value taken from the most trusted source that has one (the
    population register before the insurance and assistance files)."""
    out = rules.model_dump(exclude_defaults=True)
    out["fields"] = [{**f, "golden": "source_priority"} for f in out["fields"]]
    return out


def declaration() -> dict[str, Any]:
    """What feeds the sample city's entity types on a platform that loaded its datasets
    (`cb.fusion.declare(sample.declaration())`): the department registers, mapped onto the rules."""
    return {
        "addresses": {
            "province": {"code": "11", "name": "北京市"},
            "default": "11",
            "reference": {"dataset": "housing_buildings"},
        },
        "types": [
            {
                "rules": _authoritative(PERSON_RULES),
                "feeds": [
                    {"dataset": "ps_residents"},
                    {"dataset": "hrss_insured"},
                    {
                        "dataset": "civil_assistance",
                        "fields": {
                            "name": "applicant_name",
                            "id_number": "id_card_no",
                            "phone": "contact_phone",
                            "address": "home_address",
                        },
                    },
                ],
                "links": [{"field": "address", "to": "building", "relation": "livesIn"}],
            },
            {
                "rules": _authoritative(ENTERPRISE_RULES),
                "feeds": [
                    {
                        "dataset": "market_enterprises",
                        "fields": {"name": "enterprise_name", "address": "registered_address"},
                    },
                    {"dataset": "eco_pollutant_permits", "fields": {"name": "unit_name"}},
                ],
                "links": [{"field": "address", "to": "building", "relation": "registeredAt"}],
            },
            {
                "rules": BUILDING_RULES.model_dump(exclude_defaults=True),
                "feeds": [{"dataset": "housing_buildings", "fields": {"name": "building_name"}}],
            },
        ],
    }
