"""Identifier checksums, phone and name normalisers, rules validation, metrics, clustering."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from citybase.errors import DeclarationError
from citybase.fusion import compare
from citybase.fusion.cluster import connected_components
from citybase.fusion.evaluate import score
from citybase.fusion.rules import MatchRules
from citybase.sim import credit_code_valid


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("11010519491231002X", "11010519491231002X"),  # the GB 11643-1999 example
        ("11010519491231002x", "11010519491231002X"),  # lower-case check character
        ("440524188001010014", "440524188001010014"),
        ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),  # full-width
        ("110105491231002", "11010519491231002X"),  # 15 digits, widened with 19 and checked
        ("110105194912310021", None),  # wrong check character
        ("11010519491231002", None),  # too short
        (None, None),
    ],
)
def test_resident_id_checksum(raw: str | None, canonical: str | None) -> None:
    assert compare.cn_id(raw) == canonical


def test_id_check_char_known_answers() -> None:
    assert compare.id_check_char("11010519491231002") == "X"
    assert compare.id_check_char("44052418800101001") == "4"


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        ("91350100M000100Y43", True),  # the GB 32100-2015 example
        ("91350100m000100y43", True),
        ("91350100M000100Y44", False),  # check character off by one
        ("91350100M000100Y4", False),
        ("91350100M0001O0Y43", False),  # O is not in the code's alphabet
    ],
)
def test_uscc_checksum(raw: str, valid: bool) -> None:
    assert (compare.uscc(raw) is not None) is valid
    if valid:  # agrees with the simulator's independent validator
        assert bool(credit_code_valid(np.array([compare.uscc(raw)]))[0])


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+86 138 1234 5678",
        "+8613812345678",
        "138-1234-5678",
        "86-13812345678",
        "0086 13812345678",
    ],
)
def test_phone_forms(raw: str) -> None:
    assert compare.phone(raw) == "13812345678"


def test_names_pinyin_and_enterprise_core() -> None:
    assert compare.pinyin(compare.person_name("張 偉") or "") == compare.pinyin("张伟") == "zhangwei"
    cores = {
        compare.enterprise_core(n)
        for n in [
            "北京宏远科技有限公司",
            "宏远(北京)科技有限责任公司",
            "宏远（北京）科技有限公司",
            "北京宏远科技",
        ]
    }
    assert cores == {"宏远科技"}


def test_apply_maps_distinct_values() -> None:
    out = compare.apply(compare.phone, pa.array(["+86 138 1234 5678", None, "138-1234-5678"]))
    assert out.to_pylist() == ["13812345678", None, "13812345678"]


def test_rules_yaml_errors_name_the_field() -> None:
    with pytest.raises(DeclarationError, match=r"fields\.0\.kind"):
        MatchRules.from_yaml("entity_type: x\nfields: [{name: a, kind: nonsense}]\nblocking: [[a]]\n")
    with pytest.raises(DeclarationError, match="geo field needs lon and lat"):
        MatchRules.from_yaml("entity_type: x\nfields: [{name: p, kind: geo}]\nblocking: [[p]]\n")
    with pytest.raises(DeclarationError, match="review_threshold"):
        MatchRules.from_yaml(
            "entity_type: x\nfields: [{name: a, kind: text}]\nblocking: [[a]]\n"
            "match_threshold: 0.5\nreview_threshold: 0.8\n"
        )


def test_rules_roundtrip_yaml() -> None:
    r = MatchRules.from_yaml(
        "entity_type: person\nfields: [{name: id, kind: cn_id, exclusive: true}]\nblocking: [[id]]\n"
    )
    assert MatchRules.from_yaml(r.to_yaml()) == r


def test_connected_components_chains() -> None:
    labels = connected_components(6, np.array([4, 3, 1]), np.array([5, 4, 0]))
    assert labels.tolist() == [0, 0, 2, 3, 3, 3]


def test_scores_pairwise_and_cluster() -> None:
    s = score(["a", "a", "b", "c"], ["x", "x", "y", "y"])
    assert (s.pair_p, s.pair_r) == (1.0, 0.5)
    assert s.cluster_p == pytest.approx(1 / 3) and s.cluster_r == 0.5
    # a link task counts only pairs across sources
    s = score(["a", "a", "a"], ["x", "x", "x"], source=["l", "l", "r"])
    assert (s.pair_p, s.pair_r) == (1.0, 1.0)


def test_constrained_components_keep_rejected_pairs_apart() -> None:
    from citybase.fusion.cluster import constrained_components

    left, right = np.array([0, 1, 2]), np.array([1, 2, 3])
    w = np.array([0.99, 0.91, 0.97])
    assert constrained_components(4, left, right, w, []).tolist() == [0, 0, 0, 0]
    # 0 and 3 must stay apart: the weakest edge on the chain (1-2) is the one dropped
    assert constrained_components(4, left, right, w, [(0, 3)]).tolist() == [0, 0, 2, 2]


@pytest.mark.parametrize(
    ("address", "street"),
    [
        ("4217 west 18th street", "18"),
        ("4217 west 18th", "18"),
        ("7146 48 south ashland avenue", "ashland"),  # a range: 7146-48
        ("1900 west van buren street 1608", "vanburen"),
        ("1900 west vanburen", "vanburen"),
        ("540 north lake shore drive", "lakeshore"),
        ("78 west van buren floor 1", "vanburen"),
        ("69th and sangamon", "69andsangamon"),
        (None, None),
    ],
)
def test_street_name_same_however_typed(address: str | None, street: str | None) -> None:
    from citybase.fusion.compare import street_name

    assert street_name(address) == street


def test_one_edit() -> None:
    from citybase.fusion.features import _one_edit

    assert _one_edit("60608", "60608") and _one_edit("60608", "60680") and _one_edit("60608", "6068")
    assert _one_edit("60608", "60609") and not _one_edit("60608", "60690")
    assert not _one_edit("60608", "606") and _one_edit("abc", "abxc")


def test_exclusive_conflicts_follow_the_exclusive_level() -> None:
    from citybase.fusion.features import exclusive_conflicts, prepare

    rules = MatchRules.model_validate(
        {
            "entity_type": "site",
            "fields": [
                {"name": "address", "kind": "address", "language": "latin", "exclusive": True},
                {"name": "code", "kind": "code", "exclusive": True},
            ],
            "blocking": [["address"]],
        }
    )
    records = pa.table(
        {
            "record_id": ["a", "b", "c", "d", "e"],
            "source": ["s"] * 5,
            "address": ["12 W Main St", "12 west main", "14 W Main", "99 Oak Ave", "12 Main Street"],
            "code": ["X1", "X1", None, None, "Q9"],
        }
    )
    prepared = prepare(records, rules)
    # one cluster 0-3, another 4 alone: 99 Oak conflicts with the three Main Street records
    # (another number, another street); 14 Main is the same street, not a conflict
    labels = np.array([0, 0, 0, 0, 4])
    assert sorted(exclusive_conflicts(prepared, rules, labels)) == [(0, 3), (1, 3), (2, 3)]
    # different codes more than one edit apart conflict too
    labels = np.array([0, 1, 2, 3, 0])
    assert exclusive_conflicts(prepared, rules, labels) == [(0, 4)]


def test_separate_redoes_only_components_with_a_conflict() -> None:
    from citybase.fusion.cluster import separate

    # 0-1-2 a chain, 3-4 another component; 0 and 2 conflict
    left, right = np.array([0, 1, 3]), np.array([1, 2, 4])
    w = np.array([0.99, 0.95, 0.97])
    labels = connected_components(5, left, right)
    assert labels.tolist() == [0, 0, 0, 3, 3]
    assert separate(labels, left, right, w, [(0, 2)]).tolist() == [0, 0, 2, 3, 3]
    assert separate(labels, left, right, w, [(3, 1)]).tolist() == [0, 0, 0, 3, 3]  # not together
