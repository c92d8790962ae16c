"""Entity resolution end to end: accuracy on real sets, stable ids, incremental runs, review, golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from citybase.errors import InputError, NotFound
from citybase.fusion import sample
from citybase.fusion.benchsets import chicago, febrl
from citybase.fusion.evaluate import score
from citybase.fusion.features import AddressContext, prepare, uids
from citybase.fusion.graph import link_entities
from citybase.fusion.resolve import Resolution, resolve, resolve_incremental
from citybase.fusion.review import ReviewQueue
from citybase.fusion.store import EntityStore
from citybase.sim import SimScale, simulate


def _pred(res: Resolution, records: pa.Table, rules: object) -> list[str]:
    m = dict(zip(res.members["uid"].to_pylist(), res.members["entity_id"].to_pylist(), strict=True))
    return [m[u] for u in uids(records, rules).to_pylist()]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    simulate(out, scale=SimScale.tiny())
    return out


@pytest.fixture(scope="module")
def ctx(city: Path) -> AddressContext:
    return sample.address_context(city)


@pytest.mark.shared
@pytest.mark.slow
def test_chicago_f1_above_floor(shared: Path) -> None:
    b = chicago(shared)
    res = resolve(b.records, b.rules)
    s = score(_pred(res, b.records, b.rules), b.truth)
    assert s.pair_f1 >= 0.96, s
    assert s.pair_p >= 0.95, s
    assert s.cluster_f1 >= 0.9, s


def test_u_leaves_out_the_matches_among_random_pairs() -> None:
    """Four records per entity: most random pairs that agree exactly are matches, not chance."""
    import importlib

    resolve_mod = importlib.import_module("citybase.fusion.resolve")
    rng = np.random.default_rng(3)
    names = [f"site {i} {rng.integers(10**6)}" for i in range(200)]
    codes = [str(rng.integers(10**8)) for _ in range(200)]
    rows = [(f"r{4 * e + k}", names[e], codes[e] if k else None) for e in range(200) for k in range(4)]
    records = pa.table(
        {
            "record_id": [r[0] for r in rows],
            "source": ["s"] * len(rows),
            "name": [r[1] for r in rows],
            "code": [r[2] for r in rows],
        }
    )
    rules = resolve_mod.MatchRules.model_validate(
        {
            "entity_type": "thing",
            "fields": [{"name": "name", "kind": "text"}, {"name": "code", "kind": "code"}],
            "blocking": [["name"], ["code"]],
            "deterministic": [["name", "code"]],
        }
    )
    _pairs, model = resolve_mod.train_and_score(prepare(records, rules), rules)
    lam = model["probability_two_random_records_match"]
    exact = model["comparisons"][0]["comparison_levels"][1]
    assert exact["label_for_charts"].startswith("Exact match")
    # sampled as it is, u of an exact name would be about lambda (1 pair in 266); no two entities
    # share a name, so it is one sampled pair's worth at most
    assert exact["u_probability"] < lam / 20, (exact, lam)


@pytest.mark.shared
def test_febrl1_small_set(shared: Path) -> None:
    b = febrl(shared, "1")
    res = resolve(b.records, b.rules)
    s = score(_pred(res, b.records, b.rules), b.truth)
    assert s.pair_f1 >= 0.99, s
    assert res.entities.num_rows == len(set(_pred(res, b.records, b.rules)))
    assert int(pc.sum(res.entities["size"]).as_py()) == b.records.num_rows


def test_sample_people_resolved_with_truth(city: Path, ctx: AddressContext) -> None:
    recs = sample.people(city)
    res = resolve(recs, sample.PERSON_RULES, addresses=ctx)
    truth = sample.truth(city)
    s = score(
        _pred(res, recs, sample.PERSON_RULES), [truth[u] for u in uids(recs, sample.PERSON_RULES).to_pylist()]
    )
    assert s.pair_f1 >= 0.98, s
    # geocoding reached the housing register for most records
    assert pc.mean(pc.is_valid(res.prepared["address_key"])).as_py() > 0.9


def test_incremental_keeps_ids_and_joins_new_records(city: Path, ctx: AddressContext, tmp_path: Path) -> None:
    recs = sample.people(city)
    rules = sample.PERSON_RULES
    rng = np.random.default_rng(7)
    late = rng.random(recs.num_rows) < 0.2
    first, second = recs.filter(pa.array(~late)), recs.filter(pa.array(late))
    store = EntityStore(tmp_path / "store")
    r1 = resolve(first, rules, addresses=ctx, store=store)
    before = dict(zip(r1.members["uid"].to_pylist(), r1.members["entity_id"].to_pylist(), strict=True))

    r2 = resolve_incremental(second, rules, store, addresses=ctx)
    after = dict(zip(r2.members["uid"].to_pylist(), r2.members["entity_id"].to_pylist(), strict=True))
    assert all(after[u] == e for u, e in before.items()), "existing records changed entity"
    assert len(after) == recs.num_rows

    truth = sample.truth(city)
    entity_of_truth = {truth[u]: e for u, e in before.items()}
    new_uids = uids(second, rules).to_pylist()
    known = [u for u in new_uids if truth[u] in entity_of_truth]
    unseen = [u for u in new_uids if truth[u] not in entity_of_truth]
    assert known and unseen
    joined = sum(after[u] == entity_of_truth[truth[u]] for u in known)
    assert joined / len(known) >= 0.97
    assert not {after[u] for u in unseen} & set(before.values())

    # a full re-run keeps every id
    r3 = resolve(recs, rules, addresses=ctx, store=store)
    again = dict(zip(r3.members["uid"].to_pylist(), r3.members["entity_id"].to_pylist(), strict=True))
    same = sum(again[u] == after[u] for u in after)
    assert same / len(after) >= 0.99
    with pytest.raises(InputError, match="already resolved"):
        resolve_incremental(second, rules, store, addresses=ctx)


def test_store_records_merges_with_surviving_id(tmp_path: Path) -> None:
    store = EntityStore(tmp_path)
    ids1 = store.assign("x", "X", ["a", "b", "c", "d", "e"], np.array([0, 0, 2, 2, 2]))
    assert ids1[0] == ids1[1] != ids1[2]
    # the two entities merge: the bigger one (c, d, e) survives
    ids2 = store.assign("x", "X", ["a", "b", "c", "d", "e"], np.array([0, 0, 0, 0, 0]))
    assert set(ids2) == {ids1[2]}
    m = store.merges()
    assert m["absorbed"].to_pylist() == [ids1[0]] and m["survivor"].to_pylist() == [ids1[2]]
    assert store.surviving(ids1[0]) == ids1[2]
    # a split: the part with most records keeps the id, the other gets a fresh one
    ids3 = store.assign("x", "X", ["a", "b", "c", "d", "e"], np.array([0, 0, 0, 3, 3]))
    assert ids3[0] == ids1[2] and ids3[3] == ids3[4] != ids1[2]


@pytest.mark.shared
def test_review_queue_accept_and_reject_feed_back(shared: Path, tmp_path: Path) -> None:
    b = febrl(shared, "1")
    rules = b.rules.model_copy(update={"match_threshold": 0.999999, "review_threshold": 1e-6})
    store = EntityStore(tmp_path)
    r1 = resolve(b.records, rules, store=store)
    q = ReviewQueue(store)
    pending = q.pending("person")
    assert pending.num_rows > 2
    ent = dict(zip(r1.members["uid"].to_pylist(), r1.members["entity_id"].to_pylist(), strict=True))
    rows = pending.to_pylist()
    split = [r for r in rows if ent[r["uid_l"]] != ent[r["uid_r"]]]
    assert len(split) >= 2
    acc, rej = split[0], split[1]
    q.accept(acc["uid_l"], acc["uid_r"])
    q.reject(rej["uid_l"], rej["uid_r"])
    with pytest.raises(NotFound):
        q.accept("nope", "never")

    # a linked pair can be split by hand too: the records end up in different entities
    linked = [r for r in r1.pairs.to_pylist() if r["decision"] == "link"]
    cut = max(linked, key=lambda r: r["match_probability"])
    q.reject(cut["uid_l"], cut["uid_r"])

    r2 = resolve(b.records, rules, store=store)
    ent2 = dict(zip(r2.members["uid"].to_pylist(), r2.members["entity_id"].to_pylist(), strict=True))
    assert ent2[acc["uid_l"]] == ent2[acc["uid_r"]]
    decided = {(r["uid_l"], r["uid_r"]) for r in q.pending("person").to_pylist()}
    assert (acc["uid_l"], acc["uid_r"]) not in decided and (rej["uid_l"], rej["uid_r"]) not in decided
    assert ent2[rej["uid_l"]] != ent2[rej["uid_r"]]
    assert ent2[cut["uid_l"]] != ent2[cut["uid_r"]]
    assert ent[cut["uid_l"]] == ent[cut["uid_r"]]
    dec = {(r["uid_l"], r["uid_r"]): r["decision"] for r in r2.pairs.to_pylist()}
    assert dec.get((rej["uid_l"], rej["uid_r"]), dec.get((rej["uid_r"], rej["uid_l"]))) == "rejected"


def test_golden_record_provenance(city: Path, ctx: AddressContext) -> None:
    recs = sample.people(city)
    rules = sample.PERSON_RULES.model_copy(
        update={
            "fields": [
                f.model_copy(update={"golden": "source_priority"}) if f.name == "address" else f
                for f in sample.PERSON_RULES.fields
            ]
        }
    )
    res = resolve(recs, rules, addresses=ctx)
    members = dict(zip(res.members["uid"].to_pylist(), res.members["entity_id"].to_pylist(), strict=True))
    raw = {u: r for u, r in zip(uids(recs, rules).to_pylist(), recs.to_pylist(), strict=True)}
    g = res.golden.to_pylist()
    assert len(g) == res.entities.num_rows
    for row in g:
        for field in ("name", "id_number", "address"):
            src = row[f"{field}__from"]
            if src is None:
                continue
            assert members[src] == row["entity_id"]  # the value came from a member record
            assert raw[src][field] == row[field]  # and is that record's value
    # address by source priority: the public-security register wins wherever it holds the person
    prov = res.provenance.filter(pc.equal(res.provenance["field"], "address")).to_pylist()
    has_ps = {members[u] for u in raw if u.startswith("ps_residents|") and raw[u]["address"]}
    assert all(p["source"] == "ps_residents" for p in prov if p["entity_id"] in has_ps)
    assert all(p["rule"] == "source_priority" for p in prov)


def test_people_live_in_buildings(city: Path, ctx: AddressContext) -> None:
    people = resolve(sample.people(city), sample.PERSON_RULES, addresses=ctx)
    buildings = sample.buildings(city)
    links = link_entities(people, "address", buildings, relation="lives_in")
    assert links.num_rows > 0
    assert set(links.column_names) >= {"from_entity", "relation", "to_entity", "records"}
    # against the truth: the building a person's record points at is the true home
    truth_links = sample.truth_links(city)
    bmap = dict(
        zip(buildings.members["uid"].to_pylist(), buildings.members["entity_id"].to_pylist(), strict=True)
    )
    code_of = {bmap[u]: c for u, c in sample.truth(city).items() if u in bmap}
    person_of: dict[str, list[str]] = {}
    for u, e in zip(people.members["uid"].to_pylist(), people.members["entity_id"].to_pylist(), strict=True):
        person_of.setdefault(e, []).append(u)
    right = sum(
        any(truth_links.get(u) == code_of[row["to_entity"]] for u in person_of[row["from_entity"]])
        for row in links.to_pylist()
    )
    assert right / links.num_rows >= 0.97


def test_chinese_addresses_without_division_table(city: Path) -> None:
    # a city that configured no division table still resolves, on the normalised text
    recs = sample.people(city)
    res = resolve(recs, sample.PERSON_RULES)
    truth = sample.truth(city)
    s = score(
        _pred(res, recs, sample.PERSON_RULES), [truth[u] for u in uids(recs, sample.PERSON_RULES).to_pylist()]
    )
    assert s.pair_f1 >= 0.95, s
    assert res.prepared["address_key"].null_count == recs.num_rows


def test_missing_columns_are_named(city: Path) -> None:
    recs = sample.people(city).drop_columns(["phone"])
    with pytest.raises(InputError, match="phone"):
        resolve(recs, sample.PERSON_RULES)
