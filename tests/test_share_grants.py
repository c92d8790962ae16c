"""Requests and grants: the state machine, narrowing, expiry, scopes, masks, scoped reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from citybase.api.app import create_app
from citybase.errors import Conflict, InputError, NotFound
from citybase.model.dataset import DatasetSpec, Personal
from citybase.query.aggregate import h3_parent_sql
from citybase.query.scope import OPEN, ScopeError
from citybase.share import Decision, NotAllowed, NotShared, RowFilter, State
from citybase.share.grants import TRANSITIONS
from citybase.share.masking import PYTHON_MASKS, mask_sql
from citybase.share.scope import COARSE_H3, grant_scope, visible_columns
from test_share_world import World, build_world


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


# -- the state machine --------------------------------------------------------------------------------

ACTIONS = ("approve", "narrow", "refuse", "revoke", "expire")
#: (state, action) -> the state it leads to; every pair not listed is illegal.
LEGAL = {
    ("requested", "approve"): "approved",
    ("requested", "narrow"): "approved",
    ("requested", "refuse"): "refused",
    ("approved", "revoke"): "revoked",
    ("approved", "expire"): "expired",
}


def _in_state(w: World, state: str) -> str:
    """A fresh request of the transport department on `visits`, brought to `state`."""
    s, prov = w.share, w.who("provider")
    r = s.request(w.who("without_grant"), "visits", purpose="state machine", days=30)
    if state in ("approved", "revoked", "expired"):
        s.decide(prov, r.id, Decision(action="approve"))
    if state == "refused":
        s.decide(prov, r.id, Decision(action="refuse"))
    if state == "revoked":
        s.revoke(prov, r.id)
    if state == "expired":
        s.grants.move(r.id, State.expired, by="test")
    assert s.grants.get(r.id).state.value == state
    return r.id


def _act(w: World, rid: str, action: str) -> None:
    s, prov = w.share, w.who("provider")
    if action in ("approve", "narrow", "refuse"):
        d = Decision(action=action, days=10 if action == "narrow" else None)
        s.decide(prov, rid, d)
    elif action == "revoke":
        s.revoke(prov, rid)
    else:
        s.grants.move(rid, State.expired, by="clock")


def test_the_transition_table_is_the_documented_one() -> None:
    got = {(a.value, b.value) for a, bs in TRANSITIONS.items() for b in bs}
    assert got == {(a, b) for (a, _), b in LEGAL.items()}


@pytest.mark.parametrize("state", [s.value for s in State])
@pytest.mark.parametrize("action", ACTIONS)
def test_every_transition(world: World, state: str, action: str) -> None:
    rid = _in_state(world, state)
    target = LEGAL.get((state, action))
    if target is None:
        with pytest.raises(Conflict):
            _act(world, rid, action)
        assert world.share.grants.get(rid).state.value == state  # nothing changed
    else:
        _act(world, rid, action)
        r = world.share.grants.get(rid)
        assert r.state.value == target
        assert r.narrowed == (action == "narrow")
    if world.share.grants.get(rid).state is State.approved:
        world.share.revoke(world.who("provider"), rid)


def test_an_illegal_move_is_409_over_http(world: World) -> None:
    c = TestClient(_app(world))
    rid = _in_state(world, "refused")
    resp = c.post(
        f"/api/v1/access/requests/{rid}/decision",
        json={"action": "approve"},
        headers=world.headers("provider"),
    )
    assert resp.status_code == 409
    assert resp.json()["error"] == "conflict"


def _app(world: World) -> FastAPI:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    return app


def test_moves_are_recorded_and_sent_to_the_ledger_hook(world: World) -> None:
    before = len(world.facts)
    rid = _in_state(world, "revoked")
    kinds = [k for k, p in world.facts[before:] if p["request"] == rid]
    assert kinds == ["grant", "revoke"]
    payload = next(p for k, p in world.facts[before:] if k == "grant" and p["request"] == rid)
    assert payload["consumer"] == "transport" and payload["dataset"] == "visits" and payload["expires_at"]


def test_requests_are_refused_where_they_make_no_sense(world: World) -> None:
    s = world.share
    with pytest.raises(NotShared):
        s.request(world.who("without_grant"), "hiv_cases", purpose="x")
    with pytest.raises(InputError):
        s.request(world.who("provider"), "visits", purpose="x")
    with pytest.raises(InputError):
        s.request(world.who("without_grant"), "visits", purpose="x", fields=["no_such_field"])
    with pytest.raises(InputError):
        s.request(world.who("without_grant"), "visits", purpose="  ")
    with pytest.raises(InputError):
        s.request(
            world.who("without_grant"), "visits", purpose="x", row_filter=RowFilter(places={"moon": ["1"]})
        )
    with pytest.raises(NotFound):
        s.request(world.who("without_grant"), "no_such_dataset", purpose="x")


def test_only_the_provider_or_the_operator_decides(world: World) -> None:
    s = world.share
    r = s.request(world.who("without_grant"), "visits", purpose="x")
    with pytest.raises(NotAllowed):
        s.decide(world.who("without_grant"), r.id, Decision(action="approve"))
    with pytest.raises(NotFound):  # a stranger is not even told the request exists
        s.decide(world.who("other_tenant"), r.id, Decision(action="approve"))
    assert s.decide(world.who("operator"), r.id, Decision(action="refuse")).state is State.refused


def test_request_boxes(world: World) -> None:
    s = world.share
    r = s.request(world.who("without_grant"), "visits", purpose="boxes")
    assert r.id in {x.id for x in s.requests(world.who("without_grant"), "mine")}
    assert r.id in {x.id for x in s.requests(world.who("provider"), "incoming")}
    assert r.id not in {x.id for x in s.requests(world.who("other_tenant"), "all")}
    assert r.id in {x.id for x in s.requests(world.who("operator"), "all")}
    s.decide(world.who("provider"), r.id, Decision(action="refuse"))
    assert r.id not in {x.id for x in s.requests(world.who("provider"), "incoming")}


def test_a_grant_expires_when_its_time_is_up(world: World) -> None:
    s, clock = world.share, world.clock
    r = s.request(world.who("without_grant"), "visits", purpose="short", days=3)
    s.decide(world.who("provider"), r.id, Decision(action="narrow", days=1))
    assert s.scope_for(world.who("without_grant"), "visits").fields
    saved = clock.now
    try:
        clock.now = saved + timedelta(days=1, seconds=1)
        with pytest.raises(ScopeError):
            s.scope_for(world.who("without_grant"), "visits")
        assert s.grants.get(r.id).state is State.expired
    finally:
        clock.now = saved


# -- scopes ---------------------------------------------------------------------------------------------


def test_scope_for_each_kind_of_reader(world: World) -> None:
    s = world.share
    assert s.scope_for(world.who("provider"), "visits") is OPEN
    assert s.scope_for(world.who("operator"), "hiv_cases") is OPEN
    sc = s.scope_for(world.who("with_grant"), "visits")
    assert set(sc.masked) == {"patient", "id_number", "phone"}
    assert {"lon", "lat", "district", "h3", "cost"} <= set(sc.fields or [])
    with pytest.raises(ScopeError):
        s.scope_for(world.who("without_grant"), "visits")
    with pytest.raises(NotShared):
        s.scope_for(world.who("with_grant"), "hiv_cases")


def test_location_comes_only_with_the_fields_it_is_derived_from(world: World) -> None:
    spec = world.cb.datasets["visits"]
    assert "lon" not in visible_columns(spec, ["visit_id", "cost"])
    assert "district" not in visible_columns(spec, ["visit_id", "cost"])
    assert {"lon", "lat", "district", "h3"} <= set(visible_columns(spec, ["x", "y"]))


def test_a_position_geocoded_from_a_masked_address_is_coarsened() -> None:
    spec = DatasetSpec.model_validate(
        {
            "name": "residents",
            "department": "ps",
            "system": "pop",
            "kind": "records",
            "address_field": "address",
            "fields": [
                {"name": "name", "personal": "name"},
                {"name": "address", "personal": "address"},
            ],
        }
    )
    masked = grant_scope(spec, None).masked
    assert masked["lon"] == 'round("lon", 2)' and masked["building"] == "CAST(NULL AS VARCHAR)"
    assert masked["h3"] == h3_parent_sql('"h3"', COARSE_H3)
    raw = grant_scope(spec, None, unmasked=["address"]).masked
    assert "lon" not in raw and "address" not in raw and "name" in raw


def test_two_filters_are_anded(world: World) -> None:
    spec = world.cb.datasets["visits"]
    sc = grant_scope(
        spec, None, [RowFilter(places={"district": ["A", "B"]}), RowFilter(equals={"visit_id": ["v0A00"]})]
    )
    assert sc.row_filter == "(\"visit_id\" IN ('v0A00'))"
    assert sc.places == {"district": ("A", "B")}
    # Two filters on one level: the codes in both.
    both = grant_scope(
        spec, None, [RowFilter(places={"district": ["A", "B"]}), RowFilter(places={"district": ["B", "C"]})]
    )
    assert both.places == {"district": ("B",)} and both.row_filter is None


def test_time_windows_are_intersected_and_kept_apart(world: World) -> None:
    spec = world.cb.datasets["visits"]  # three days from 2024-05-01
    a, c = datetime(2024, 4, 1), datetime(2024, 5, 3)
    b = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=8)))  # 04:00 UTC
    filters = [RowFilter(start=a, end=c), RowFilter(places={"district": ["A"]}, start=b)]
    sc = grant_scope(spec, None, filters)
    # The later start, the one end; the window is kept out of the SQL row filter.
    assert sc.start == b and sc.end == c
    assert sc.row_filter is None and sc.places == {"district": ("A",)} and sc.limits_rows and not sc.is_open
    # It lets through exactly what the two filters' SQL lets through, and that is not everything.
    got = world.cb.query.sql("SELECT count(*) AS n FROM city.visits", scopes={"visits": sc})
    both = " AND ".join(f"({f.sql(spec)})" for f in filters)
    want = world.cb.query.sql(f"SELECT count(*) AS n FROM city.visits WHERE {both}")
    assert 0 < got.column("n")[0].as_py() == want.column("n")[0].as_py() < world.cb.lake.stats()["visits"]


def test_reads_through_a_narrowed_grant(world: World) -> None:
    s, prov = world.share, world.who("provider")
    r = s.request(world.who("without_grant"), "visits", purpose="district A only")
    s.decide(prov, r.id, Decision(action="narrow", row_filter=RowFilter(places={"district": ["A"]})))
    try:
        who = world.who("without_grant")
        box = (116.2, 39.8, 116.5, 40.0)
        t = s.read(who, "visits", "bbox", bbox=box)
        full = world.cb.query.bbox("visits", box)
        a_rows = [x for x in full.to_pylist() if x["district"] == "A"]
        assert t.num_rows == len(a_rows) > 0
        counts = s.read(who, "visits", "counts", level="district")
        assert counts.column("code").to_pylist() == ["A"]
        assert counts.column("count").to_pylist() == [len(a_rows)]
        with pytest.raises(InputError):
            s.read(who, "visits", "bbox", bbox=box, scope=OPEN)
        with pytest.raises(InputError):
            s.read(who, "visits", "drop_table")
    finally:
        s.revoke(prov, r.id)


# -- masks ----------------------------------------------------------------------------------------------

CON = duckdb.connect()


def _sql_mask(value: str | None, personal: Personal) -> str | None:
    row = CON.execute(f"SELECT {mask_sql('v', personal)} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("personal", "value", "masked"),
    [
        (Personal.id_number, "110101199003071234", "110***********1234"),
        (Personal.id_number, "11010119900307123X", "110***********123X"),
        (Personal.phone, "13812345678", "138****5678"),
        (Personal.phone, "1234567", "*******"),
        (Personal.name, "张三", "张*"),
        (Personal.name, "诸葛孔明", "诸***"),
        (Personal.name, "李", "*"),
        (Personal.address, "北京市朝阳区望京街道8号楼", "北京市朝阳区****"),
        (Personal.email, "zhang.san@example.cn", "z***@example.cn"),
        (Personal.email, "not-an-email", "***"),
        (Personal.other, "x", "***"),
        (Personal.name, None, None),
    ],
)
def test_masks(personal: Personal, value: str | None, masked: str | None) -> None:
    assert PYTHON_MASKS[personal](value) == masked
    assert _sql_mask(value, personal) == masked


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(list(Personal)),
)
def test_sql_masks_match_python_masks(value: str, personal: Personal) -> None:
    got = _sql_mask(value, personal)
    assert got == PYTHON_MASKS[personal](value)
    if personal in (Personal.id_number, Personal.phone, Personal.name) and value:
        assert got is not None and len(got) == len(value)  # the shape stays; the content goes


@pytest.mark.parametrize(
    "equals",
    [{"cost": ["cheap"]}, {"cost": [True]}, {"visit_id": [3]}, {"t": ["2024-05-01"]}, {"nope": ["x"]}],
)
def test_a_filter_that_would_fail_at_read_time_is_refused_now(
    world: World, equals: dict[str, list[Any]]
) -> None:
    with pytest.raises(InputError):
        RowFilter(equals=equals).sql(world.cb.datasets["visits"])
    assert RowFilter(equals={"cost": [100, 110.5]}).sql(world.cb.datasets["visits"]) == (
        '("cost" IN (100, 110.5))'
    )


def test_long_lists_use_list_contains(world: World) -> None:
    spec = world.cb.datasets["visits"]
    many: list[str | int | float | bool] = [f"v{i}" for i in range(40)]
    sql = RowFilter(equals={"visit_id": many}).sql(spec)
    assert sql is not None and sql.startswith("(list_contains(string_split('v0,v1,")
    commas: list[str | int | float | bool] = [f"v,{i}" for i in range(20)]  # another separator
    sql = RowFilter(equals={"visit_id": commas}).sql(spec)
    assert sql is not None and sql.startswith("(list_contains(string_split('v,0\x1fv,1")
    both: list[str | int | float | bool] = [f"v,\x1f{i}" for i in range(20)]  # no separator left
    sql = RowFilter(equals={"visit_id": both}).sql(spec)
    assert sql is not None and sql.startswith("(list_contains([")
    assert RowFilter(equals={"visit_id": []}).sql(spec) == "(FALSE)"
    for values in (many, commas, both):
        n = world.cb.query.bbox(
            "visits",
            (0, 0, 180, 90),
            scope=grant_scope(spec, None, [RowFilter(equals={"visit_id": [*values, "v0A00"]})]),
        )
        assert n.column("visit_id").to_pylist() == ["v0A00"]
