"""The security table: every role x endpoint x sharing attribute, with the status it must get,
and no personal value ever leaving unmasked without a grant that allows it.

Roles (test_share_world.py): the provider, the operator, a consumer with a live grant, one without,
one whose grant expired, one whose grant was revoked, another tenant (which holds a grant on
another provider's dataset), and an anonymous caller. The table below is the specification;
the test is generated from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from citybase.api.app import create_app
from citybase.share import Decision, RowFilter
from test_share_world import DATASETS, SHARINGS, World, build_world, raw_personal_values

ROLES = (
    "provider",
    "operator",
    "with_grant",
    "without_grant",
    "expired",
    "revoked",
    "other_tenant",
    "anonymous",
)
ALL_OK = {r: (200, 200, 200) for r in ROLES[:-1]} | {"anonymous": (401, 401, 401)}
READ = {
    "provider": (200, 200, 200),
    "operator": (200, 200, 200),
    "with_grant": (200, 200, 403),
    "without_grant": (403, 403, 403),
    "expired": (403, 403, 403),
    "revoked": (403, 403, 403),
    "other_tenant": (403, 403, 403),
    "anonymous": (401, 401, 401),
}
CONSUMER_REQUEST = (201, 201, 403)
ACT = {  # deciding or revoking a request the "with_grant" department made
    "provider": (None, None, 404),
    "operator": (None, None, 404),
    "with_grant": (403, 403, 404),
    "without_grant": (404, 404, 404),
    "expired": (404, 404, 404),
    "revoked": (404, 404, 404),
    "other_tenant": (404, 404, 404),
    "anonymous": (401, 401, 401),
}

#: endpoint -> role -> status for (unconditional, conditional, not_shared).
TABLE: dict[str, Mapping[str, tuple[int | None, ...]]] = {
    "catalog_entry": ALL_OK,
    "catalog_search": ALL_OK,
    "dcat": ALL_OK,
    "bbox": READ,
    "bbox_geojson": READ,
    "counts": READ,
    "h3": READ,
    "sql": READ,
    "aggregate": ALL_OK,
    "budget": ALL_OK,
    "request": {
        "provider": (400, 400, 400),
        "operator": (400, 400, 400),
        **{
            r: CONSUMER_REQUEST for r in ("with_grant", "without_grant", "expired", "revoked", "other_tenant")
        },
        "anonymous": (401, 401, 401),
    },
    # An unconditional request is approved on arrival: deciding it again is an illegal move.
    "decide": {k: ((409, 200, 404) if v[0] is None else v) for k, v in ACT.items()},
    "revoke": {k: ((200, 200, 404) if v[0] is None else v) for k, v in ACT.items()},
    "usage": ALL_OK,
    "stats": ALL_OK,
}
#: Where personal fields come back raw: the provider's and the operator's own reads.
RAW = {(e, r) for e in ("bbox", "bbox_geojson", "sql") for r in ("provider", "operator")}

CASES = [
    (endpoint, role, sharing, statuses[i])
    for endpoint, by_role in TABLE.items()
    for role, statuses in by_role.items()
    for i, sharing in enumerate(SHARINGS)
]
WINDOW = "start=2024-05-01T00:00:00&end=2024-05-04T00:00:00"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    return TestClient(app)


def _fresh_request(w: World, ds: str, approve: bool) -> str:
    """A new request of the "with_grant" department, approved if asked (unconditional: always)."""
    r = w.share.request(w.who("with_grant"), ds, purpose="table test")
    if approve and r.state.value == "requested":
        r = w.share.decide(w.who("provider"), r.id, Decision(action="approve"))
    return r.id


def _close(w: World, rid: str) -> None:
    """Leave the world as it was: end whatever the case left open."""
    r = w.share.grants.get(rid)
    if r.state.value == "approved":
        w.share.revoke(w.who("provider"), rid, "test cleanup")
    elif r.state.value == "requested":
        w.share.decide(w.who("provider"), rid, Decision(action="refuse", reason="test cleanup"))


def _call(endpoint: str, c: TestClient, w: World, role: str, ds: str) -> Iterator[Any]:
    h = w.headers(role)
    if endpoint == "catalog_entry":
        yield c.get(f"/api/v1/catalog/{ds}", headers=h)
    elif endpoint == "catalog_search":
        yield c.get("/api/v1/catalog", params={"q": ds}, headers=h)
    elif endpoint == "dcat":
        yield c.get("/api/v1/catalog.jsonld", headers=h)
    elif endpoint == "bbox":
        yield c.get(f"/api/v1/data/{ds}/bbox?bbox=116.2,39.8,116.5,40.0", headers=h)
    elif endpoint == "bbox_geojson":
        yield c.get(
            f"/api/v1/data/{ds}/bbox?bbox=116.2,39.8,116.5,40.0",
            headers={**h, "Accept": "application/geo+json"},
        )
    elif endpoint == "counts":
        yield c.get(f"/api/v1/data/{ds}/counts?level=district&every=1d", headers=h)
    elif endpoint == "h3":
        yield c.get(f"/api/v1/data/{ds}/h3?resolution=9", headers=h)
    elif endpoint == "sql":
        body = {"query": f"SELECT patient, phone, id_number, cost FROM city.{ds}", "purpose": "table"}
        yield c.post("/api/v1/data/sql", json=body, headers=h)
    elif endpoint == "aggregate":
        yield c.get(f"/api/v1/aggregates/{ds}?level=district&every=1d&{WINDOW}", headers=h)
    elif endpoint == "budget":
        yield c.get(f"/api/v1/access/budget/{ds}", headers=h)
    elif endpoint == "request":
        resp = c.post("/api/v1/access/requests", json={"dataset": ds, "purpose": "table test"}, headers=h)
        yield resp
        if resp.status_code == 201:
            _close(w, resp.json()["id"])
    elif endpoint in ("decide", "revoke"):
        if ds == DATASETS["not_shared"]:
            rid = "0" * 32  # there is no request on a not-shared dataset to act on
        else:
            rid = _fresh_request(w, ds, approve=endpoint == "revoke")
        if endpoint == "decide":
            yield c.post(f"/api/v1/access/requests/{rid}/decision", json={"action": "approve"}, headers=h)
        else:
            yield c.post(f"/api/v1/access/requests/{rid}/revoke", json={"reason": "table"}, headers=h)
        if rid != "0" * 32:
            _close(w, rid)
    elif endpoint == "usage":
        yield c.get("/api/v1/usage?by=dataset&by=consumer", headers=h)
    elif endpoint == "stats":
        yield c.get("/api/v1/stats", headers=h)
    else:  # pragma: no cover
        raise AssertionError(endpoint)


def test_the_table_covers_every_combination() -> None:
    assert {(e, r, s) for e, r, s, _ in CASES} == {(e, r, s) for e in TABLE for r in ROLES for s in SHARINGS}
    assert len(CASES) == len(TABLE) * len(ROLES) * len(SHARINGS)


@pytest.mark.parametrize(("endpoint", "role", "sharing", "status"), CASES)
def test_security_table(
    client: TestClient, world: World, endpoint: str, role: str, sharing: str, status: int
) -> None:
    ds = DATASETS[sharing]
    gen = _call(endpoint, client, world, role, ds)
    resp = next(gen)
    try:
        assert resp.status_code == status, resp.text
        body = resp.text
        raw = [v for v in raw_personal_values() if v in body]
        if (endpoint, role) in RAW and status == 200:
            assert raw, "the provider's own read should show its data raw"
        else:
            assert raw == [], f"personal values leaked: {raw[:3]}"
        if status >= 400:
            assert resp.json()["error"], resp.text
    finally:
        for _ in gen:  # the cleanup after the yield
            pass


# -- what a grant shows ------------------------------------------------------------------------------


def _rows(client: TestClient, world: World, role: str, ds: str, accept: str = "application/json") -> Any:
    resp = client.get(
        f"/api/v1/data/{ds}/bbox?bbox=116.2,39.8,116.5,40.0&limit=1000",
        headers={**world.headers(role), "Accept": accept},
    )
    assert resp.status_code == 200, resp.text
    return resp


def test_a_grant_masks_personal_fields_by_default(client: TestClient, world: World) -> None:
    rows = _rows(client, world, "with_grant", "visits").json()["rows"]
    assert len(rows) > 10
    for r in rows:
        assert r["patient"][1:] == "*" * (len(r["patient"]) - 1)
        assert (
            r["id_number"][:3] == "110" and r["id_number"][3:14] == "*" * 11 and r["id_number"][14:].isdigit()
        )
        assert r["phone"][:3] == "138" and r["phone"][3:7] == "****"
        assert r["cost"] > 0  # not personal: as stored


def test_arrow_and_geojson_carry_the_same_masked_rows(client: TestClient, world: World) -> None:
    js = _rows(client, world, "with_grant", "visits").json()
    arrow = pa.ipc.open_stream(
        _rows(client, world, "with_grant", "visits", "application/vnd.apache.arrow.stream").content
    ).read_all()
    geo = _rows(client, world, "with_grant", "visits", "application/geo+json").json()
    assert arrow.num_rows == len(js["rows"]) == len(geo["features"])
    assert sorted(arrow.column("phone").to_pylist()) == sorted(r["phone"] for r in js["rows"])
    assert geo["features"][0]["geometry"]["type"] == "Point"
    assert not set(arrow.column("patient").to_pylist()) & raw_personal_values()


def test_a_grant_may_unmask_one_field_and_narrow_rows_and_columns(client: TestClient, world: World) -> None:
    s, prov = world.share, world.who("provider")
    r = s.request(
        world.who("without_grant"),
        "visits",
        purpose="call patients",
        fields=["visit_id", "phone", "x", "y", "t"],
    )
    d = Decision(
        action="narrow", row_filter=RowFilter(places={"district": ["A"]}), unmasked=["phone"], days=10
    )
    g = s.decide(prov, r.id, d)
    assert g.narrowed and g.state.value == "approved"
    try:
        rows = _rows(client, world, "without_grant", "visits").json()
        assert {"patient", "id_number", "cost"}.isdisjoint(rows["columns"])
        assert {r["district"] for r in rows["rows"]} == {"A"}
        phones = {p["phone"] for p in rows["rows"]}
        assert phones and phones <= raw_personal_values()  # unmasked, as granted
    finally:
        s.revoke(prov, r.id)


def test_a_narrowing_cannot_widen(world: World) -> None:
    s, prov = world.share, world.who("provider")
    r = s.request(world.who("without_grant"), "visits", purpose="x", fields=["visit_id"], days=5)
    from citybase.errors import InputError

    with pytest.raises(InputError):
        s.decide(prov, r.id, Decision(action="narrow", fields=["visit_id", "patient"]))
    with pytest.raises(InputError):
        s.decide(prov, r.id, Decision(action="narrow", days=30))
    with pytest.raises(InputError):  # only personal fields can be unmasked
        s.decide(prov, r.id, Decision(action="approve", unmasked=["cost"]))
    s.decide(prov, r.id, Decision(action="refuse"))


def test_revocation_holds_at_the_next_read(client: TestClient, world: World) -> None:
    s, prov = world.share, world.who("provider")
    r = s.request(world.who("without_grant"), "visits", purpose="short job")
    s.decide(prov, r.id, Decision(action="approve"))
    assert _rows(client, world, "without_grant", "visits").status_code == 200
    s.revoke(prov, r.id)
    resp = client.get(
        "/api/v1/data/visits/bbox?bbox=116.2,39.8,116.5,40.0", headers=world.headers("without_grant")
    )
    assert resp.status_code == 403
    assert resp.json()["error"] == "forbidden"


def test_consumers_see_only_their_own_usage(client: TestClient, world: World) -> None:
    _rows(client, world, "with_grant", "visits")
    for role in ("with_grant", "other_tenant"):
        got = client.get("/api/v1/usage?by=consumer&by=dataset", headers=world.headers(role)).json()
        dept = world.who(role).department
        assert all(r["consumer"] == dept for r in got)
    prov = client.get("/api/v1/usage?by=consumer&by=dataset", headers=world.headers("provider")).json()
    assert {r["consumer"] for r in prov} >= {"police"}  # uses of its datasets by others
    assert all(r["dataset"] in DATASETS.values() or r["consumer"] == "health" for r in prov)


def test_track_through_a_grant(client: TestClient, world: World) -> None:
    ok = client.get("/api/v1/data/air/track?object=w", headers=world.headers("other_tenant"))
    assert ok.status_code == 200 and ok.json()["numberReturned"] == 1
    assert (
        client.get("/api/v1/data/air/track?object=w", headers=world.headers("with_grant")).status_code == 403
    )
    # A dataset whose rows have no object: the engine says so (400), whoever asks.
    assert (
        client.get("/api/v1/data/visits/track?object=x", headers=world.headers("provider")).status_code == 400
    )


def test_sql_reads_only_granted_datasets(client: TestClient, world: World) -> None:
    s, who = world.share, world.who("with_grant")
    t = s.sql(who, "SELECT count(*) AS n, min(phone) AS p FROM city.visits")
    assert t.column("n")[0].as_py() == len(world.cb.query.bbox("visits", (0, 0, 180, 90)))
    assert t.column("p")[0].as_py().startswith("138****")
    from citybase.query.scope import ScopeError

    with pytest.raises(ScopeError):  # a join reaching a dataset without a grant
        s.sql(who, "SELECT count(*) FROM city.visits v JOIN city.air a ON true")
    with pytest.raises(ScopeError):  # the lake's raw tables are out of reach
        s.sql(who, "SELECT count(*) FROM lake.visits")
