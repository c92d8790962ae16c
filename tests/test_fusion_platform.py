"""The platform's entity store: fed from lake datasets, kept up to date incrementally, and read by
every department through its grants (Python API; the HTTP and NGSI-LD views: test_fusion_api.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from citybase.errors import DeclarationError, NotFound
from citybase.fusion import sample
from citybase.fusion.declaration import FusionDeclaration
from citybase.fusion.lake import feed_records
from citybase.platform import CityBase
from citybase.registry import Principal, Role
from citybase.share import Decision, RowFilter
from citybase.share.masking import mask_address, mask_name
from citybase.sim import SimScale, simulate
from citybase.sim.scale import SimManifest

PEOPLE = ("ps_residents", "hrss_insured", "civil_assistance")
FIRMS = ("market_enterprises", "eco_pollutant_permits")
DEPARTMENTS = (
    "public-security",
    "hrss",
    "civil-affairs",
    "housing",
    "market-regulation",
    "eco-env",
    "transport",
    "planning",
    "district-office",
    "other",
    "city",
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    simulate(out, scale=SimScale.tiny())
    return out


def build(
    root: Path, source: Path, datasets: tuple[str, ...], files: dict[str, Path] | None = None
) -> CityBase:
    """A platform with the city model, the departments and the given datasets loaded."""
    m = SimManifest.load(source)
    cb = CityBase.open(root)
    cb.setup_city(source / m.city)
    for d in DEPARTMENTS:
        cb.registry.add_department(d)
    for name in datasets:
        decl, data = m.datasets[name]
        cb.declare(source / decl)
        cb.load(name, (files or {}).get(name, source / data))
    return cb


def who(department: str) -> Principal:
    role = Role.ADMIN if department == "city" else Role.MEMBER
    return Principal(department=department, role=role, key_id=f"test-{department}")


@dataclass
class World:
    cb: CityBase
    person: str  # a person entity with records in ps_residents and civil_assistance, located
    raw: dict[str, str]  # its ps_residents record, raw


def _grant(cb: CityBase, consumer: str, dataset: str, fields: list[str] | None, **decision: object) -> None:
    r = cb.share.request(who(consumer), dataset, purpose="test", fields=fields)
    if r.state.value == "requested":
        provider = cb.datasets[dataset].department
        cb.share.decide(who(provider), r.id, Decision(action="approve", **decision))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("root"), source)
    yield w
    w.cb.close()


def make_world(root: Path, source: Path) -> World:
    """The sample city's people, firms and buildings resolved, with grants to two consumers."""
    cb = build(root, source, (*PEOPLE, "housing_buildings", *FIRMS))
    cb.fusion.declare(sample.declaration())
    for et in ("building", "person", "enterprise"):
        cb.fusion.resolve(et)
    # transport: names and addresses of residents, masked; planning: addresses unmasked
    _grant(cb, "transport", "ps_residents", ["record_id", "name", "address", "birth_date"])
    _grant(cb, "transport", "housing_buildings", None)
    _grant(cb, "planning", "ps_residents", ["record_id", "name", "address"], unmasked=["address"])
    admin = who("city")
    best = None
    for item in cb.fusion.entities(admin, "person", limit=1000).items:
        if {"ps_residents", "civil_assistance"} <= set(item.sources):
            p = cb.fusion.entity(admin, item.id)
            from_ps = all(p.golden[f].dataset == "ps_residents" for f in ("name", "address", "id_number"))
            if from_ps and p.location is not None and any(lk.relation == "livesIn" for lk in p.links):
                best = p
                break
    assert best is not None, "the sample city has people known to two departments"
    rec = next(r for r in best.records if r["dataset"] == "ps_residents")
    return World(cb, best.id, {k: str(v) for k, v in rec["values"].items() if v is not None})


# -- declaration ------------------------------------------------------------------------------------


def test_declaration_is_checked_against_the_lake(world: World) -> None:
    bad = sample.declaration()
    bad["types"][0]["feeds"][2]["fields"]["name"] = "no_such_column"
    with pytest.raises(DeclarationError, match="no_such_column"):
        world.cb.fusion.declare(bad)
    with pytest.raises(DeclarationError, match="not a column the rules read"):
        world.cb.fusion.declare({"types": [{**sample.declaration()["types"][2], "feeds": [
            {"dataset": "housing_buildings", "fields": {"colour": "use"}}]}]})  # fmt: skip
    assert world.cb.fusion.entity_types() == ["person", "enterprise", "building"]  # unchanged


def test_declaration_round_trips_through_yaml() -> None:
    d = FusionDeclaration.load(sample.declaration())
    again = FusionDeclaration.load(d.to_yaml())
    assert again == d
    assert [t.ngsi for t in d.types] == ["Person", "Organization", "Building"]


# -- reads through grants -----------------------------------------------------------------------------


def test_operator_sees_everything_raw(world: World) -> None:
    p = world.cb.fusion.entity(who("city"), world.person)
    assert {r["dataset"] for r in p.records} >= {"ps_residents", "civil_assistance"}
    assert p.golden["name"].value == world.raw["name"]
    assert p.places.get("district")
    assert p.ngsi_id == f"urn:ngsi-ld:Person:{world.person}"


def test_owner_sees_only_its_own_records(world: World) -> None:
    p = world.cb.fusion.entity(who("public-security"), world.person)
    assert {r["dataset"] for r in p.records} == {"ps_residents"}
    assert {g.dataset for g in p.golden.values()} == {"ps_residents"}
    assert p.golden["id_number"].value == world.raw["id_number"]
    civil = world.cb.fusion.entity(who("civil-affairs"), world.person)
    assert {r["dataset"] for r in civil.records} == {"civil_assistance"}
    # golden values taken from records civil affairs cannot read are left out, not substituted
    assert not {"name", "address", "id_number", "birth_date"} & set(civil.golden)


def test_grant_projects_and_masks(world: World) -> None:
    p = world.cb.fusion.entity(who("transport"), world.person)
    assert [r["dataset"] for r in p.records] == ["ps_residents"]
    values = p.records[0]["values"]
    assert "id_number" not in values and "phone" not in values  # not granted
    assert values["name"] == mask_name(world.raw["name"]) != world.raw["name"]
    assert p.golden["name"].value == mask_name(world.raw["name"])
    assert p.golden["address"].value == mask_address(world.raw["address"])
    assert set(p.golden) == {"name", "address", "birth_date"}
    # a masked address must not come back as a point, a place or the building it is in
    assert p.location is None and p.places == {}
    assert not [lk for lk in p.links if lk.relation == "livesIn"]


def test_unmasked_address_gives_location_and_links(world: World) -> None:
    p = world.cb.fusion.entity(who("planning"), world.person)
    admin = world.cb.fusion.entity(who("city"), world.person)
    assert p.golden["address"].value == world.raw["address"]
    assert p.golden["name"].value == mask_name(world.raw["name"])
    assert p.location is not None
    assert [lk.entity for lk in p.links if lk.relation == "livesIn"]
    assert {lk.entity for lk in p.links} <= {lk.entity for lk in admin.links}


def test_without_grant_and_other_tenant_see_nothing(world: World) -> None:
    for dept in ("eco-env", "other"):
        with pytest.raises(NotFound):
            world.cb.fusion.entity(who(dept), world.person)
        assert world.cb.fusion.entities(who(dept), "person").total == 0
    # eco-env sees the firms its permits feed, and nothing of the people
    firms = world.cb.fusion.entities(who("eco-env"), "enterprise", limit=1000)
    assert firms.total > 0 and all(i.sources == ["eco_pollutant_permits"] for i in firms.items)


def test_listing_counts_only_visible_entities(world: World) -> None:
    fusion = world.cb.fusion
    everyone = fusion.entities(who("city"), "person").total
    owner = fusion.entities(who("public-security"), "person").total
    civil = fusion.entities(who("civil-affairs"), "person").total
    assert civil < owner < everyone
    page = fusion.entities(who("civil-affairs"), "person", limit=5, offset=2)
    assert len(page.items) == 5 and all(i.sources == ["civil_assistance"] for i in page.items)
    ids = [i.id for i in fusion.entities(who("city"), "person", limit=1000).items]
    assert ids == sorted(ids) and len(ids) == everyone


def test_search_reads_what_the_reader_reads(world: World) -> None:
    fusion, name = world.cb.fusion, world.raw["name"]
    assert world.person in [i.id for i in fusion.entities(who("city"), q=name, limit=100).items]
    # transport reads the names masked: the raw name finds nothing of this person, the mask does
    assert world.person not in [i.id for i in fusion.entities(who("transport"), q=name, limit=100).items]
    masked = fusion.entities(who("transport"), q=mask_name(name), limit=1000).items
    assert world.person in [i.id for i in masked]
    assert [i.id for i in fusion.entities(who("transport"), q=world.person).items] == [world.person]


def test_row_filter_of_a_grant_limits_the_entities(world: World) -> None:
    cb = world.cb
    r = cb.share.request(
        who("district-office"),
        "ps_residents",
        purpose="test",
        row_filter=RowFilter(equals={"gender": ["女"]}),
    )
    cb.share.decide(who("public-security"), r.id, Decision(action="approve"))
    page = cb.fusion.entities(who("district-office"), "person", limit=1000)
    assert 0 < page.total < cb.fusion.entities(who("public-security"), "person").total
    rows = cb.sql("SELECT record_id, gender FROM lake.ps_residents")
    gender = dict(zip(rows["record_id"].to_pylist(), rows["gender"].to_pylist(), strict=True))
    assert {gender[r] for r in gender} == {"男", "女"}
    for item in page.items[:20]:
        p = cb.fusion.entity(who("district-office"), item.id)
        assert p.records and {gender[r["record_id"]] for r in p.records} == {"女"}
    men = [i.id for i in cb.fusion.entities(who("public-security"), "person", limit=1000).items
           if i.id not in {x.id for x in page.items}]  # fmt: skip
    with pytest.raises(NotFound):
        cb.fusion.entity(who("district-office"), men[0])


def test_reads_are_metered_as_uses_of_the_datasets(world: World) -> None:
    world.cb.fusion.entity(who("transport"), world.person)
    world.cb.share.usage.flush()
    rows = world.cb.share.usage_summary(who("transport"), ["dataset", "kind"])
    assert any(r.dataset == "ps_residents" and r.kind == "sql" for r in rows)


# -- incremental updates --------------------------------------------------------------------------------


def test_new_rows_join_existing_entities_and_ids_stay(source: Path, tmp_path: Path) -> None:
    residents = pq.read_table(source / "data" / "ps_residents.parquet")
    cut = int(residents.num_rows * 0.8)
    pq.write_table(residents.slice(0, cut), tmp_path / "residents_a.parquet")
    pq.write_table(residents.slice(cut), tmp_path / "residents_b.parquet")
    cb = build(
        tmp_path / "root",
        source,
        (*PEOPLE, "housing_buildings"),
        {"ps_residents": tmp_path / "residents_a.parquet"},
    )
    try:
        decl = sample.declaration()
        decl["types"] = [t for t in decl["types"] if t["rules"]["entity_type"] != "enterprise"]
        cb.fusion.declare(decl)
        assert cb.fusion.update() == {}  # never resolved: update does not train a model by itself
        cb.fusion.resolve("building")
        cb.fusion.resolve("person")
        store = cb.fusion.store
        old = store.ids("person")
        before = dict(zip(old["uid"].to_pylist(), old["entity_id"].to_pylist(), strict=True))

        s0 = cb.lake.snapshot()
        cb.load("ps_residents", tmp_path / "residents_b.parquet")
        # The change feed holds the new rows and nothing else of the type's feeds.
        person = cb.fusion.declaration.type("person")
        assert feed_records(cb, person, since=(s0, cb.lake.snapshot())).num_rows == residents.num_rows - cut
        assert feed_records(cb, person, since=(s0, s0)).num_rows == 0
        t0 = time.perf_counter()
        assert cb.fusion.update() == {"person": residents.num_rows - cut}
        assert time.perf_counter() - t0 < 60
        ids = store.ids("person")
        after = dict(zip(ids["uid"].to_pylist(), ids["entity_id"].to_pylist(), strict=True))
        assert all(after[u] == e for u, e in before.items()), "an existing record changed entity"

        truth = sample.truth(source)
        home = {truth[u]: e for u, e in before.items()}  # true person -> the entity its old records got
        new = [f"ps_residents|{r}" for r in residents.slice(cut)["record_id"].to_pylist()]
        known = [u for u in new if truth[u] in home]
        joined = [u for u in known if after[u] == home[truth[u]]]
        assert len(known) >= 10 and len(joined) / len(known) >= 0.9, (len(joined), len(known))
        assert cb.fusion.update() == {}  # nothing new: nothing done

        # a row ingested (acknowledged, then flushed into the lake) joins its person's entity
        admin = who("city")
        eid = after[known[0]]
        rec = next(r for r in cb.fusion.entity(admin, eid).records if r["dataset"] == "ps_residents")
        row = {k: v for k, v in rec["values"].items() if k != "record_id"} | {"record_id": "GA99999999"}
        cb.ingest("ps_residents", [row])
        cb.flush()
        assert cb.fusion.update() == {"person": 1}
        assert cb.fusion.store.ids("person").filter(
            pc.equal(cb.fusion.store.ids("person")["uid"], "ps_residents|GA99999999")
        )["entity_id"].to_pylist() == [eid]
        assert "GA99999999" in [r["record_id"] for r in cb.fusion.entity(admin, eid).records]
        # The last update's snapshot forgotten (maintain), the next reads the feeds whole, less
        # the records known: the new row joins once, and nothing twice.
        cb.ingest("ps_residents", [row | {"record_id": "GA99999998"}])
        cb.flush()
        assert cb.maintain(timedelta(0)).expired > 0
        assert cb.fusion.update() == {"person": 1}
    finally:
        cb.close()
    _cli_reads_as_departments(tmp_path / "root", eid)


def _cli_reads_as_departments(root: Path, eid: str) -> None:
    """`citybase fusion list/show/update` over the same platform, as the operator or a department."""
    import json

    from typer.testing import CliRunner

    from citybase.cli.main import app

    run = CliRunner().invoke
    r = run(app, ["fusion", "show", eid, "--root", str(root), "--json"])
    assert r.exit_code == 0, r.output
    prof = json.loads(r.output)
    assert prof["id"] == eid and "GA99999999" in [x["record_id"] for x in prof["records"]]
    r = run(app, ["fusion", "show", eid, "--root", str(root), "--as", "housing"])
    assert r.exit_code == 1 and "no entity" in r.output  # housing reads no person records
    r = run(app, ["fusion", "list", "--type", "person", "--q", eid, "--root", str(root)])
    assert r.exit_code == 0 and eid in r.output and "of 1" in r.output
    r = run(app, ["fusion", "update", "--root", str(root)])
    assert r.exit_code == 0 and "nothing new" in r.output
