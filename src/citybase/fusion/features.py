"""From declared fields to comparable columns and to Splink comparisons.

Each field kind adds normalised columns to the records (`prepare`) and contributes one
Fellegi-Sunter comparison with ordered levels (`comparisons`): what our platform knows about
Chinese names, identity numbers and addresses goes into the columns, the probabilistic scoring is
Splink's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from citybase.fusion import compare
from citybase.fusion.address.normalise import normalise_address, simplify
from citybase.fusion.address.western import normalise_street, parse_western
from citybase.fusion.divisions import Divisions
from citybase.fusion.geocode import Reference, geocode, name_key, road_key
from citybase.fusion.rules import FieldRule, MatchRules

log = logging.getLogger(__name__)
UID = "uid"  # source + record id: unique across departments
EXCLUSIVE_M = 1e-6  # m of "values differ" on an exclusive field


@dataclass
class AddressContext:
    """What Chinese address fields are parsed and geocoded against (from the city's config)."""

    divisions: Divisions
    reference: Reference | None = None
    default: str | None = None  # division code prefix of the city, to settle short names


def _str(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    a = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return a if a.type == pa.string() else a.cast(pa.string())


def uids(records: pa.Table, rules: MatchRules) -> pa.Array:
    rid = _str(records[rules.record_id])
    if rules.source and rules.source in records.column_names:
        return pc.binary_join_element_wise(_str(records[rules.source]), rid, "|")
    return rid


def prepare(records: pa.Table, rules: MatchRules, addresses: AddressContext | None = None) -> pa.Table:
    """The records with a `uid` and the normalised columns every comparison reads."""
    cols: dict[str, pa.Array] = {UID: uids(records, rules)}
    if rules.source and rules.source in records.column_names:
        cols["source_dataset"] = _str(records[rules.source])
    for f in rules.fields:
        cols.update(_columns(records, f, addresses))
    return pa.table(cols)


def _columns(records: pa.Table, f: FieldRule, ctx: AddressContext | None) -> dict[str, pa.Array]:
    n = f.name
    if f.kind == "geo":
        return {
            f"{n}_lon": records[f.lon].combine_chunks().cast(pa.float64()),  # type: ignore[index]
            f"{n}_lat": records[f.lat].combine_chunks().cast(pa.float64()),  # type: ignore[index]
        }
    raw = _str(records[n])
    if f.kind == "person_name":
        v = compare.apply(compare.person_name, raw)
        return {n: v, f"{n}_py": compare.apply(lambda s: compare.pinyin(s) if s else None, v)}
    if f.kind == "enterprise_name":
        v = compare.apply(lambda s: simplify(s) if s else None, raw)
        core = compare.apply(compare.enterprise_core, raw)
        return {
            n: v,
            f"{n}_core": core,
            f"{n}_py": compare.apply(lambda s: compare.pinyin(s) if s else None, core),
        }
    if f.kind == "text":
        return {n: compare.apply(compare.text, raw)}
    if f.kind == "cn_id":
        return {n: compare.cn_id_column(raw)}
    if f.kind == "uscc":
        return {n: compare.apply(compare.uscc, raw)}
    if f.kind == "phone":
        return {n: compare.apply(compare.phone if f.region == "cn" else compare.phone_nanp, raw)}
    if f.kind == "date":
        return {n: compare.apply(lambda s: s.strip()[:10] if s and s.strip() else None, raw)}
    if f.kind in ("exact", "code"):
        return {n: compare.apply(lambda s: s.strip().lower() if s and s.strip() else None, raw)}
    # address
    if f.language == "latin":
        norm = compare.apply(normalise_street, raw)
        num = compare.apply(lambda s: parse_western(s).number, norm)
        return {n: norm, f"{n}_num": num, f"{n}_street": compare.apply(compare.street_name, norm)}
    if ctx is None:  # no division table configured: compare the normalised text only
        none = pa.nulls(len(raw), pa.string())
        return {
            n: compare.apply(lambda s: normalise_address(s) if s else None, raw),
            f"{n}_key": none,
            f"{n}_unit": none,
            f"{n}_lon": pa.nulls(len(raw), pa.float64()),
            f"{n}_lat": pa.nulls(len(raw), pa.float64()),
        }
    g = geocode(raw, ctx.divisions, ctx.reference, default=ctx.default)
    ref = g["ref_id"].combine_chunks()
    d6 = [c[:6] if c else None for c in g["division_code"].to_pylist()]
    own = [
        road_key(d, r, num) or name_key(b, bl)
        for d, r, num, b, bl in zip(
            d6,
            g["road"].to_pylist(),
            g["number"].to_pylist(),
            g["building_name"].to_pylist(),
            g["building"].to_pylist(),
            strict=True,
        )
    ]
    key = pc.coalesce(ref, pa.array(own, pa.string()))
    tail = pc.binary_join_element_wise(
        pc.fill_null(g["unit"].combine_chunks(), ""), pc.fill_null(g["room"].combine_chunks(), ""), "-"
    )
    return {
        n: pc.if_else(pc.is_valid(raw), g["normalised"].combine_chunks(), pa.scalar(None, pa.string())),
        f"{n}_key": key,
        f"{n}_unit": pc.if_else(pc.equal(tail, "-"), pa.scalar(None, pa.string()), tail),
        f"{n}_lon": g["lon"].combine_chunks(),
        f"{n}_lat": g["lat"].combine_chunks(),
    }


def comparisons(rules: MatchRules) -> list[Any]:
    """One Splink comparison per field, levels from most to least similar."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    out: list[Any] = []
    for f in rules.fields:
        n = f.name
        levels: list[Any]
        if f.kind == "person_name":
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n, term_frequency_adjustments=f.term_frequency),
                cll.ExactMatchLevel(f"{n}_py"),
                cll.JaroWinklerLevel(f"{n}_py", 0.92),
                cll.JaroWinklerLevel(f"{n}_py", 0.8),
                cll.ElseLevel(),
            ]
        elif f.kind == "enterprise_name":
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n),
                cll.ExactMatchLevel(f"{n}_core"),
                cll.JaroWinklerLevel(f"{n}_py", 0.92),
                cll.JaroWinklerLevel(f"{n}_py", 0.8),
                cll.ElseLevel(),
            ]
        elif f.kind == "text":
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n, term_frequency_adjustments=f.term_frequency),
                cll.JaroWinklerLevel(n, 0.92),
                cll.CustomLevel(_token_overlap(n, 0.6), "tokens >= 0.6"),
                cll.JaroWinklerLevel(n, 0.8),
                cll.CustomLevel(_token_overlap(n, 0.3), "tokens >= 0.3"),
                cll.ElseLevel(),
            ]
        elif f.kind in ("cn_id", "uscc", "phone", "code"):
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n, term_frequency_adjustments=f.term_frequency),
                cll.DamerauLevenshteinLevel(n, 1),
                _exclusive(cll.ElseLevel(), f),
            ]
        elif f.kind == "date":
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n),
                cll.DamerauLevenshteinLevel(n, 1),
                cll.ElseLevel(),
            ]
        elif f.kind == "exact":
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n, term_frequency_adjustments=f.term_frequency),
                cll.ElseLevel(),
            ]
        elif f.kind == "geo":
            lat, lon = f"{n}_lat", f"{n}_lon"
            levels = [
                cll.CustomLevel(f'"{lat}_l" is null or "{lat}_r" is null', "null").configure(
                    is_null_level=True
                ),
                cll.DistanceInKMLevel(lat, lon, 0.05),
                cll.DistanceInKMLevel(lat, lon, 0.2),
                cll.DistanceInKMLevel(lat, lon, 1.0),
                cll.ElseLevel(),
            ]
        elif f.language == "latin":
            num, street = f"{n}_num", f"{n}_street"
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n),
                cll.CustomLevel(
                    f'"{num}_l" = "{num}_r" and "{street}_l" = "{street}_r"', "same number and street"
                ),
                cll.CustomLevel(
                    f'"{num}_l" = "{num}_r" and jaro_winkler_similarity("{n}_l", "{n}_r") >= 0.88',
                    "number, street ~",
                ),
                cll.CustomLevel(f'"{num}_l" = "{num}_r"', "same number, other street"),
                cll.CustomLevel(f'"{street}_l" = "{street}_r"', "same street, other number"),
                _exclusive(cll.CustomLevel(f'"{num}_l" <> "{num}_r"', "other number"), f),
                cll.JaroWinklerLevel(n, 0.9),
                cll.CustomLevel(_token_overlap(n, 0.5), "tokens >= 0.5"),
                cll.ElseLevel(),
            ]
        else:  # Chinese address: same building and flat, same building, near, similar text
            key, unit = f"{n}_key", f"{n}_unit"
            levels = [
                cll.NullLevel(n),
                cll.ExactMatchLevel(n),
                cll.CustomLevel(
                    f'"{key}_l" = "{key}_r" and "{unit}_l" = "{unit}_r"', "same building and flat"
                ),
                cll.CustomLevel(f'"{key}_l" = "{key}_r"', "same building"),
                cll.JaroWinklerLevel(n, 0.9),
                cll.ElseLevel(),
            ]
        out.append(
            cl.CustomComparison(comparison_levels=levels, output_column_name=n, comparison_description=f.kind)
        )
    return out


def _exclusive(level: Any, f: FieldRule) -> Any:
    """A 'values differ' level of an exclusive field: fixed near-impossible among matches.

    Unlabelled EM cannot know what the entity *is* (a site is its address; a person has one
    identity number); the rules can say so, and then the level is not trained.
    """
    if not f.exclusive:
        return level
    return level.configure(m_probability=EXCLUSIVE_M, fix_m_probability=True)


def _token_overlap(col: str, at_least: float) -> str:
    a, b = f"""str_split("{col}_l", ' ')""", f"""str_split("{col}_r", ' ')"""
    return (
        f"len(list_intersect(list_distinct({a}), list_distinct({b})))::double"
        f" / greatest(len(list_distinct(list_concat({a}, {b}))), 1) >= {at_least}"
    )


MAX_CONFLICT_CLUSTER = 2000  # members; a bigger cluster is left as it is (and logged)


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance of at most one."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _address_differs(num: list[Any], street: list[Any]) -> Callable[[int, int], bool]:
    """Different house numbers, not on the same street: the exclusive level of a western address."""
    return lambda i, j: bool(num[i] != num[j] and not (street[i] is not None and street[i] == street[j]))


def _code_differs(key: list[Any]) -> Callable[[int, int], bool]:
    """More than one edit apart: the exclusive level of an identity number or code."""
    return lambda i, j: not _one_edit(key[i], key[j])


def exclusive_conflicts(prepared: pa.Table, rules: MatchRules, labels: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of records put in one cluster that an exclusive field says are different entities.

    The same test as the field's "values differ" level: two valid identity numbers more than one
    edit apart; two western addresses with different house numbers, not on the same street. A
    chain of links (A-B on a shared phone, B-C on a similar name) can join such a pair though no
    link joins them directly; clustering keeps them apart instead (`cluster.separate`).
    """
    out: list[tuple[int, int]] = []
    for f in rules.fields:
        if not f.exclusive:
            continue
        n = f.name
        if f.kind == "address" and f.language == "latin":
            key = prepared[f"{n}_num"].to_pylist()
            differ = _address_differs(key, prepared[f"{n}_street"].to_pylist())
        elif f.kind in ("cn_id", "uscc", "phone", "code"):
            key = prepared[n].to_pylist()
            differ = _code_differs(key)
        else:
            continue
        frame = pd.DataFrame({"label": labels, "key": key}).dropna()
        distinct = frame.drop_duplicates().groupby("label").size()
        for label in distinct[distinct > 1].index.tolist():
            members = frame.index[frame["label"].to_numpy() == label].to_numpy()
            if len(members) > MAX_CONFLICT_CLUSTER:
                log.warning("cluster of %d records not checked for %s conflicts", len(members), n)
                continue
            by_key: dict[Any, list[int]] = {}
            for i in members.tolist():
                by_key.setdefault(key[i], []).append(i)
            groups = list(by_key.values())
            for x in range(len(groups)):
                for y in range(x + 1, len(groups)):
                    out.extend((i, j) for i in groups[x] for j in groups[y] if differ(i, j))
    return out
