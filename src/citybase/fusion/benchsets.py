"""The entity-resolution sets with ground truth in shared/data, loaded as records + truth + rules.

Used by the tests and by benchmarks/fusion_bench.py; the data are read in place, never copied.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from citybase.fusion.rules import MatchRules


@dataclass
class BenchSet:
    name: str
    records: pa.Table  # with `source` and `record_id`
    truth: list[str]  # true entity per row
    rules: MatchRules
    link: bool  # a link task: only pairs across sources count


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _table(rows: list[dict[str, str]], cols: dict[str, str]) -> pa.Table:
    return pa.table(
        {new: pa.array([r.get(old) or None for r in rows], pa.string()) for new, old in cols.items()}
    )


CHICAGO_RULES = MatchRules.model_validate(
    {
        "entity_type": "site",
        "id_prefix": "S",
        "fields": [
            {"name": "name", "kind": "text"},
            {"name": "address", "kind": "address", "language": "latin", "exclusive": True},
            {"name": "zip", "kind": "code"},
            {"name": "phone", "kind": "phone", "region": "nanp"},
        ],
        "blocking": [
            ["phone"],
            ["address_num", "zip"],
            ["address"],
            ["address_num", "address_street"],
            "l.address_num = r.address_num and substr(l.name, 1, 3) = substr(r.name, 1, 3)",
            ["name"],
        ],
        "training_blocking": [["phone"], ["address"], ["name"]],
        "deterministic": [["address"], ["name", "phone"]],
        "match_threshold": 0.9,
        "review_threshold": 0.5,
    }
)


def chicago(root: Path) -> BenchSet:
    rows = _read(
        root / "entity_resolution" / "chicago_early_childhood_dedupe" / "csv_example_input_with_true_ids.csv"
    )
    for r in rows:
        r["Phone"] = r["Phone"].split(".")[0]
        r["Zip"] = r["Zip"].split(".")[0]
    t = _table(
        rows,
        {
            "record_id": "Id",
            "source": "Source",
            "name": "Site name",
            "address": "Address",
            "zip": "Zip",
            "phone": "Phone",
        },
    )
    return BenchSet("chicago", t, [r["True Id"] for r in rows], CHICAGO_RULES, False)


def _febrl_rules(link: bool) -> MatchRules:
    return MatchRules.model_validate(
        {
            "entity_type": "person",
            "id_prefix": "P",
            "link_type": "link_only" if link else "dedupe_only",
            "fields": [
                {"name": "given_name", "kind": "person_name"},
                {"name": "surname", "kind": "person_name"},
                {"name": "date_of_birth", "kind": "date"},
                {"name": "soc_sec_id", "kind": "code"},
                {"name": "street_number", "kind": "code"},
                {"name": "address_1", "kind": "address", "language": "latin"},
                {"name": "suburb", "kind": "text"},
                {"name": "postcode", "kind": "code"},
            ],
            "blocking": [
                ["soc_sec_id"],
                ["given_name", "surname"],
                ["date_of_birth"],
                ["postcode", "street_number"],
                ["surname", "postcode"],
                "l.given_name = r.surname and l.surname = r.given_name",
                ["address_1"],
                ["given_name_py", "date_of_birth"],
            ],
            "training_blocking": [["date_of_birth"], ["postcode"], ["surname"]],
            "deterministic": [["soc_sec_id"], ["given_name", "surname", "date_of_birth"]],
            "deterministic_recall": 0.8,
            "match_threshold": 0.9,
            "review_threshold": 0.5,
        }
    )


FEBRL_COLS = [
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
]


def febrl(root: Path, which: str) -> BenchSet:
    """FEBRL dataset 1, 2, 3 (dedupe) or 4 (4a + 4b, a link task); truth from rec-N in rec_id."""
    folder = root / "entity_resolution" / "febrl"
    files = ["dataset4a.csv", "dataset4b.csv"] if which == "4" else [f"dataset{which}.csv"]
    rows: list[dict[str, str]] = []
    for f in files:
        for r in _read(folder / f):
            r["source"] = f.removesuffix(".csv")
            rows.append(r)
    t = _table(rows, {"record_id": "rec_id", "source": "source", **{c: c for c in FEBRL_COLS}})
    truth = ["-".join(r["rec_id"].split("-")[:2]) for r in rows]
    return BenchSet(f"febrl{which}", t, truth, _febrl_rules(which == "4"), which == "4")


FZ_RULES = MatchRules.model_validate(
    {
        "entity_type": "restaurant",
        "id_prefix": "R",
        "link_type": "link_only",
        "fields": [
            {"name": "name", "kind": "text"},
            {"name": "addr", "kind": "address", "language": "latin"},
            {"name": "city", "kind": "text"},
            {"name": "phone", "kind": "phone", "region": "nanp"},
            {"name": "type", "kind": "text"},
        ],
        "blocking": [["phone"], ["addr_num"], ["name"], "substr(l.name, 1, 4) = substr(r.name, 1, 4)"],
        "training_blocking": [["phone"], ["addr_num"], ["city"]],
        "deterministic": [["phone"]],
        "deterministic_recall": 0.9,
        "match_threshold": 0.9,
        "review_threshold": 0.5,
    }
)


def fodors_zagats(root: Path) -> BenchSet:
    folder = root / "entity_resolution" / "fodors_zagats_restaurants"
    rows: list[dict[str, str]] = []
    for f in ("fodors", "zagats"):
        for r in _read(folder / f"{f}.csv"):
            r["source"] = f
            rows.append(r)
    t = _table(
        rows,
        {
            "record_id": "id",
            "source": "source",
            "name": "name",
            "addr": "addr",
            "city": "city",
            "phone": "phone",
            "type": "type",
        },
    )
    truth = {f"{r['source']}|{r['id']}": f"{r['source']}|{r['id']}" for r in rows}
    for m in _read(folder / "match_fodors_zagats_more_attrs.csv"):
        if m["gold"] == "1":
            truth[f"zagats|{m['zagats_id']}"] = f"fodors|{m['fodors_id']}"
    return BenchSet("fodors_zagats", t, [truth[f"{r['source']}|{r['id']}"] for r in rows], FZ_RULES, True)
