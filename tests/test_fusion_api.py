"""City entities over HTTP: /api/v1/entities and NGSI-LD, a table of roles x endpoints, no personal
value leaving unmasked without a grant, and new rows joining entities through the server's
maintainer thread."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from citybase.api.app import create_app
from citybase.api.settings import Settings
from citybase.share.masking import mask_name
from citybase.sim import SimScale, simulate
from citybase.testing import serving
from test_fusion_platform import World, make_world, who

ROLES = {
    "operator": "city",
    "owner": "public-security",
    "with_grant": "transport",
    "without_grant": "eco-env",
    "other_tenant": "other",
    "anonymous": None,
}
#: role -> (listed by GET /api/v1/entities?type=person, GET /api/v1/entities/{id}, NGSI-LD retrieve)
TABLE: dict[str, tuple[bool | int, int, int]] = {
    "operator": (True, 200, 200),
    "owner": (True, 200, 200),
    "with_grant": (True, 200, 200),
    "without_grant": (False, 404, 404),
    "other_tenant": (False, 404, 404),
    "anonymous": (401, 401, 401),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    source = tmp_path_factory.mktemp("city")
    simulate(source, scale=SimScale.tiny())
    w = make_world(tmp_path_factory.mktemp("root"), source)
    yield w
    w.cb.close()


@pytest.fixture(scope="module")
def keys(world: World) -> dict[str, str]:
    out = {}
    for role, dept in ROLES.items():
        if dept is not None:
            out[role] = world.cb.registry.issue_key(dept, role="admin" if dept == "city" else "member").key
    return out


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.cb, background=False)) as c:
        yield c


def _auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"} if role in keys else {}


def _secrets(world: World) -> list[str]:
    """Every personal value of the person's records, raw (for leak checks)."""
    admin = world.cb.fusion.entity(who("city"), world.person)
    spec = {n: world.cb.datasets[n] for n in {r["dataset"] for r in admin.records}}
    return [
        str(r["values"][f])
        for r in admin.records
        for f in spec[r["dataset"]].personal_fields
        if r["values"].get(f) and len(str(r["values"][f])) > 3
    ]


@pytest.mark.parametrize("role", list(ROLES))
def test_role_table(world: World, keys: dict[str, str], client: TestClient, role: str) -> None:
    listed, profile, ngsi = TABLE[role]
    h = _auth(keys, role)
    r = client.get("/api/v1/entities", params={"type": "person", "limit": 1000}, headers=h)
    if isinstance(listed, int) and not isinstance(listed, bool):
        assert r.status_code == listed
    else:
        assert r.status_code == 200
        assert (world.person in [i["id"] for i in r.json()["items"]]) is listed
    r2 = client.get(f"/api/v1/entities/{world.person}", headers=h)
    assert r2.status_code == profile, r2.text
    r3 = client.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{world.person}", headers=h)
    assert r3.status_code == ngsi, r3.text
    if role not in ("operator", "owner"):  # nothing personal leaves unmasked without a grant allowing it
        for text in (r.text, r2.text, r3.text):
            body = json.loads(text)  # the JSON's own strings, not escapes
            dumped = json.dumps(body, ensure_ascii=False)
            leaked = [s for s in _secrets(world) if s in dumped]
            assert not leaked, (role, leaked)


def test_profile_over_http_is_the_python_answer(
    world: World, keys: dict[str, str], client: TestClient
) -> None:
    r = client.get(f"/api/v1/entities/{world.person}", headers=_auth(keys, "with_grant"))
    assert r.json() == world.cb.fusion.entity(who("transport"), world.person).model_dump(mode="json")
    assert r.json()["golden"]["name"]["value"] == mask_name(world.raw["name"])
    page = client.get(
        "/api/v1/entities", params={"q": world.raw["name"]}, headers=_auth(keys, "operator")
    ).json()
    assert world.person in [i["id"] for i in page["items"]]
    assert (
        client.get("/api/v1/entities", params={"limit": -1}, headers=_auth(keys, "operator")).status_code
        == 422
    )


def test_ngsi_ld_entity_with_relationships(world: World, keys: dict[str, str], client: TestClient) -> None:
    h = _auth(keys, "operator")
    e = client.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{world.person}", headers=h).json()
    assert e["type"] == "Person" and e["name"]["value"] == world.raw["name"]
    assert e["name"]["sourceRecord"]["value"] == f"ps_residents|{world.raw['record_id']}"
    assert e["location"]["type"] == "GeoProperty" and e["location"]["value"]["type"] == "Point"
    lives = e["livesIn"] if isinstance(e["livesIn"], dict) else e["livesIn"][0]
    assert lives["type"] == "Relationship" and lives["object"].startswith("urn:ngsi-ld:Building:B-")
    b = client.get(f"/ngsi-ld/v1/entities/{lives['object']}", headers=h)
    assert b.status_code == 200 and b.json()["type"] == "Building"
    # keyValues, as for any other entity
    kv = client.get(
        f"/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{world.person}", params={"options": "keyValues"}, headers=h
    ).json()
    assert kv["livesIn"] == lives["object"] or lives["object"] in kv["livesIn"]
    # as the consumer with a masked grant reads it: masked name, no location, no building
    t = client.get(
        f"/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{world.person}", headers=_auth(keys, "with_grant")
    ).json()
    assert t["name"]["value"] == mask_name(world.raw["name"])
    assert "location" not in t and "livesIn" not in t and "id_number" not in t


def test_ngsi_ld_query_by_type(world: World, keys: dict[str, str], client: TestClient) -> None:
    h = _auth(keys, "operator")
    total = world.cb.fusion.entities(who("city"), "person").total
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Person", "limit": 7, "count": "true"}, headers=h)
    assert r.status_code == 200 and int(r.headers["NGSILD-Results-Count"]) == total
    page = r.json()
    assert len(page) == 7 and all(e["type"] == "Person" for e in page)
    nxt = client.get(
        "/ngsi-ld/v1/entities", params={"type": "Person", "limit": 7, "offset": 7}, headers=h
    ).json()
    assert not {e["id"] for e in page} & {e["id"] for e in nxt}
    q = client.get(
        "/ngsi-ld/v1/entities", params={"type": "Person", "q": f'name=="{world.raw["name"]}"'}, headers=h
    ).json()
    assert f"urn:ngsi-ld:Person:{world.person}" in [e["id"] for e in q]
    firms = client.get("/ngsi-ld/v1/entities", params={"type": "Organization"}, headers=h).json()
    assert firms and all(e["id"].startswith("urn:ngsi-ld:Organization:E-") for e in firms)
    # another department's query by type: only what its grants show
    eco = client.get(
        "/ngsi-ld/v1/entities",
        params={"type": "Person", "count": "true"},
        headers=_auth(keys, "without_grant"),
    )
    assert eco.json() == [] and eco.headers["NGSILD-Results-Count"] == "0"
    # entities of the context store are still there, before the provided ones
    client.post(
        "/ngsi-ld/v1/entities",
        json={
            "id": "urn:ngsi-ld:Person:stored",
            "type": "Person",
            "name": {"type": "Property", "value": "x"},
        },
        headers=h,
    )
    both = client.get(
        "/ngsi-ld/v1/entities", params={"type": "Person", "limit": 2, "count": "true"}, headers=h
    )
    assert both.json()[0]["id"] == "urn:ngsi-ld:Person:stored"
    assert int(both.headers["NGSILD-Results-Count"]) == total + 1


def test_operator_declares_and_runs_over_http(world: World, keys: dict[str, str], client: TestClient) -> None:
    assert (
        client.get("/api/v1/fusion", headers=_auth(keys, "owner")).json()["types"][0]["rules"]["entity_type"]
        == "person"
    )
    assert client.post("/api/v1/fusion/update", headers=_auth(keys, "owner")).status_code == 403
    assert client.put("/api/v1/fusion", json={}, headers=_auth(keys, "owner")).status_code == 403
    r = client.post("/api/v1/fusion/update", headers=_auth(keys, "operator"))
    assert r.status_code == 200 and r.json() == {"added": {}}
    bad = client.put("/api/v1/fusion", json={"types": [{"feeds": []}]}, headers=_auth(keys, "operator"))
    assert bad.status_code == 400


def test_new_rows_join_through_the_maintainer(
    world: World,
    keys: dict[str, str],
) -> None:
    """Rows acknowledged over HTTP reach the lake (flusher) and their entity (maintainer)."""
    settings = Settings(root=world.cb.root, flush_interval=0.2, maintain_interval=0.5)
    hrss = world.cb.registry.issue_key("hrss", role="member").key
    row = {
        "record_id": "SB99999999",
        "name": world.raw["name"],
        "id_number": world.raw["id_number"],
        "phone": world.raw.get("phone"),
        "address": world.raw["address"],
    }
    with serving(create_app(world.cb, settings)) as url:
        r = httpx.post(
            f"{url}/api/v1/datasets/hrss_insured/rows",
            json={"rows": [row]},
            headers={"Authorization": f"Bearer {hrss}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 60
        seen: list[str] = []
        while time.monotonic() < deadline:
            got = httpx.get(
                f"{url}/api/v1/entities/{world.person}", headers=_auth(keys, "operator"), timeout=30
            ).json()
            seen = [r["record_id"] for r in got["records"] if r["dataset"] == "hrss_insured"]
            if "SB99999999" in seen:
                break
            time.sleep(0.3)
        assert "SB99999999" in seen
        mine = httpx.get(f"{url}/api/v1/entities/{world.person}", headers={"Authorization": f"Bearer {hrss}"})
        assert [r["record_id"] for r in mine.json()["records"]] == seen
