"""NGSI-LD API: entities, queries, batches, errors, contexts, tenants and auth, in process."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from citybase.api import Settings, create_app
from citybase.platform import CityBase

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CTX = {
    "@context": {
        "AirQualityObserved": "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved",
        "no2": "https://smartdatamodels.org/dataModel.Environment/no2",
    }
}


@pytest.fixture
def cb(tmp_path: Path) -> Iterator[CityBase]:
    with CityBase.open(tmp_path / "city", threads=1) as platform:
        yield platform


@pytest.fixture
def client(cb: CityBase) -> Iterator[TestClient]:
    app = create_app(cb, Settings(root=cb.root, ngsi_ld_open_on_loopback=True), background=False)
    with TestClient(app) as c:
        yield c
    app.state.ngsi.close()


def aqo(i: int, lon: float = 116.4, lat: float = 39.9, no2: float = 40.0) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:{i}",
        "type": "AirQualityObserved",
        "no2": {"type": "Property", "value": no2, "unitCode": "GQ"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
    }


def test_create_retrieve_update_delete(client: TestClient) -> None:
    r = client.post(f"{BASE}/entities", json=aqo(1))
    assert r.status_code == 201 and r.headers["location"].endswith("AirQualityObserved:1")
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1")
    assert r.status_code == 200
    assert r.json() == aqo(1)
    assert "ngsi-ld-core-context" in r.headers["link"]
    assert client.post(f"{BASE}/entities", json=aqo(1)).json()["type"] == ERR + "AlreadyExists"
    r = client.patch(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1/attrs",
        json={"no2": {"type": "Property", "value": 55}},
    )
    assert r.status_code == 204
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1?options=keyValues")
    assert r.json()["no2"] == 55
    r = client.post(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1/attrs",
        json={"pm25": {"type": "Property", "value": 12}},
    )
    assert r.status_code == 204
    r = client.delete(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1/attrs/no2")
    assert r.status_code == 204
    body = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1?options=sysAttrs").json()
    assert "no2" not in body and body["pm25"]["value"] == 12 and "createdAt" in body
    assert client.delete(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1").status_code == 204
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1")
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"


def test_jsonld_context_round_trip(client: TestClient) -> None:
    """Names given under a user @context come back compacted with it, and expanded without it."""
    body = {**aqo(2), **CTX}
    r = client.post(f"{BASE}/entities", json=body, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:2")
    assert r.json()["type"] == CTX["@context"]["AirQualityObserved"]
    assert CTX["@context"]["no2"] in r.json()
    r = client.get(
        f"{BASE}/entities?type={CTX['@context']['AirQualityObserved']}",
        headers={"Accept": "application/ld+json"},
    )
    assert r.json()[0]["@context"].endswith("v1.9.jsonld")


def test_query_q_type_count_pagination(client: TestClient) -> None:
    for i in range(25):
        assert client.post(f"{BASE}/entities", json=aqo(i, no2=float(i))).status_code == 201
    r = client.get(f"{BASE}/entities?type=AirQualityObserved&q=no2>=20&count=true")
    assert r.headers["NGSILD-Results-Count"] == "5"
    assert sorted(e["no2"]["value"] for e in r.json()) == [20, 21, 22, 23, 24]
    r = client.get(f"{BASE}/entities?type=AirQualityObserved&limit=10&offset=20")
    assert len(r.json()) == 5 and 'rel="prev"' in r.headers["link"]
    r = client.get(f"{BASE}/entities?type=AirQualityObserved&q=no2==3..5;no2!=4")
    assert sorted(e["no2"]["value"] for e in r.json()) == [3, 5]
    r = client.get(f"{BASE}/entities?idPattern=.*:1[0-9]$&type=AirQualityObserved&attrs=no2")
    assert len(r.json()) == 10 and all("location" not in e for e in r.json())


@pytest.mark.parametrize("georel", ["near;maxDistance==3000", "within", "intersects"])
def test_geo_queries_match_shapely_brute_force(client: TestClient, georel: str) -> None:
    rng = random.Random(7)
    points = [(116.3 + rng.random() * 0.2, 39.8 + rng.random() * 0.2) for _ in range(150)]
    batch = [aqo(i, lon, lat) for i, (lon, lat) in enumerate(points)]
    assert client.post(f"{BASE}/entityOperations/create", json=batch).status_code == 201
    if georel.startswith("near"):
        geometry, coords = "Point", "[116.4,39.9]"
        from citybase.context.geo import metres

        expected = {i for i, p in enumerate(points) if metres(Point(116.4, 39.9), Point(p)) <= 3000}
    else:
        ring = [[116.35, 39.85], [116.45, 39.85], [116.45, 39.95], [116.35, 39.95], [116.35, 39.85]]
        geometry, coords = "Polygon", str([ring]).replace(" ", "")
        from shapely.geometry import Polygon

        poly = Polygon(ring)
        expected = {
            i
            for i, p in enumerate(points)
            if (Point(p).within(poly) if georel == "within" else Point(p).intersects(poly))
        }
    r = client.get(
        f"{BASE}/entities",
        params={
            "type": "AirQualityObserved",
            "georel": georel,
            "geometry": geometry,
            "coordinates": coords,
            "limit": 1000,
        },
    )
    assert r.status_code == 200
    got = {int(e["id"].rsplit(":", 1)[1]) for e in r.json()}
    assert got == expected and 0 < len(expected) < 150


def test_batch_partial_success_is_207(client: TestClient) -> None:
    r = client.post(
        f"{BASE}/entityOperations/create", json=[aqo(1), {"id": "not a uri", "type": "X"}, aqo(1)]
    )
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == ["urn:ngsi-ld:AirQualityObserved:1"]
    assert [e["error"]["type"] for e in body["errors"]] == [ERR + "BadRequestData", ERR + "BadRequestData"]
    r = client.post(f"{BASE}/entityOperations/delete", json=["urn:ngsi-ld:AirQualityObserved:1"])
    assert r.status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        (
            "post",
            "/entities",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "InvalidRequest",
        ),
        ("post", "/entities", {"json": {"type": "X"}}, 400, "BadRequestData"),
        ("get", "/entities?type=X&bogus=1", {}, 400, "InvalidRequest"),
        ("get", "/entities?q=no2>", {}, 400, "BadRequestData"),
        ("get", "/entities/urn:x:1", {"headers": {"Accept": "text/html"}}, 406, "NotAcceptable"),
        (
            "post",
            "/entities",
            {"content": b"{}", "headers": {"Content-Type": "text/plain"}},
            415,
            "UnsupportedMediaType",
        ),
        (
            "post",
            "/entities",
            {
                "json": {**aqo(9), "@context": "https://example.org/unknown.jsonld"},
                "headers": {"Content-Type": "application/ld+json"},
            },
            503,
            "LdContextNotAvailable",
        ),
    ],
)
def test_error_types(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, error: str
) -> None:
    r = getattr(client, method)(BASE + path, **kwargs)
    assert r.status_code == status
    body = r.json()
    assert body["type"] == ERR + error and body["title"] and body["detail"]


def test_tenants_are_isolated(client: TestClient) -> None:
    assert (
        client.post(f"{BASE}/entities", json=aqo(1), headers={"NGSILD-Tenant": "transport"}).status_code
        == 201
    )
    assert client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1").status_code == 404
    r = client.get(f"{BASE}/entities?type=AirQualityObserved", headers={"NGSILD-Tenant": "environment"})
    assert r.json() == []
    r = client.get(f"{BASE}/entities?type=AirQualityObserved", headers={"NGSILD-Tenant": "transport"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:AirQualityObserved:1"]


def test_keys_are_required_unless_open_on_loopback(cb: CityBase) -> None:
    app = create_app(cb, Settings(root=cb.root), background=False)
    with TestClient(app) as c:
        r = c.get(f"{BASE}/entities?type=X")
        assert r.status_code == 401 and r.json()["type"] == ERR + "Unauthorized"
        cb.registry.add_department("environment")
        key = cb.registry.issue_key("environment").key
        auth = {"Authorization": f"Bearer {key}"}
        assert c.post(f"{BASE}/entities", json=aqo(1), headers=auth).status_code == 201
        r = c.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=auth)
        assert r.status_code == 200 and r.headers["NGSILD-Tenant"] == "environment"
        r = c.get(f"{BASE}/entities?type=X", headers={**auth, "NGSILD-Tenant": "police"})
        assert r.status_code == 403
    app.state.ngsi.close()


def test_open_on_loopback_refuses_other_hosts(cb: CityBase) -> None:
    with pytest.raises(ValueError, match="loopback"):
        create_app(
            cb, Settings(root=cb.root, host="0.0.0.0", ngsi_ld_open_on_loopback=True), background=False
        )


def test_types_and_attributes(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=aqo(1))
    assert client.get(f"{BASE}/types").json()["typeList"] == ["AirQualityObserved"]
    info = client.get(f"{BASE}/types/AirQualityObserved").json()
    assert info["entityCount"] == 1 and {a["attributeName"] for a in info["attributeDetails"]} == {
        "no2",
        "location",
    }
    assert client.get(f"{BASE}/attributes").json()["attributeList"] == ["location", "no2"]


def test_jsonld_contexts_registry(client: TestClient) -> None:
    r = client.post(f"{BASE}/jsonldContexts", json=CTX)
    assert r.status_code == 201
    local = r.headers["location"].rsplit("/", 1)[1]
    assert client.get(f"{BASE}/jsonldContexts/{local}").json() == CTX
    listed = client.get(f"{BASE}/jsonldContexts?details=true").json()
    assert {c["kind"] for c in listed} >= {"Hosted", "Cached"}
    assert client.delete(f"{BASE}/jsonldContexts/{local}").status_code == 204
    assert client.get(f"{BASE}/jsonldContexts/{local}").status_code == 404


def test_linked_entities_join_in_get_and_in_a_post_query(client: TestClient) -> None:
    """join=inline puts the linked entity in its Relationship, join=flat lists it after; a Query
    body (POST /entityOperations/query) carries join as a member, not in the URL."""
    city = {"id": "urn:ngsi-ld:City:1", "type": "City", "name": {"type": "Property", "value": "Haidian"}}
    building = {
        "id": "urn:ngsi-ld:Building:1",
        "type": "Building",
        "locatedAt": {"type": "Relationship", "object": city["id"]},
    }
    for e in (city, building):
        assert client.post(f"{BASE}/entities", json=e).status_code == 201
    got = client.get(f"{BASE}/entities?type=Building&join=inline").json()
    assert got[0]["locatedAt"]["entity"] == city
    query = {"type": "Query", "entities": [{"type": "Building"}]}
    inline = client.post(f"{BASE}/entityOperations/query", json={**query, "join": "inline"}).json()
    assert inline == got
    flat = client.post(f"{BASE}/entityOperations/query", json={**query, "join": "flat"}).json()
    assert flat == [building, city]
    plain = client.post(f"{BASE}/entityOperations/query", json=query).json()
    assert plain == [building]
    bad = client.post(f"{BASE}/entityOperations/query", json={**query, "join": "sideways"})
    assert bad.status_code == 400


def test_an_update_result_names_attributes_in_full(client: TestClient) -> None:
    """A 207 UpdateResult carries no @context: its attribute names are full IRIs."""
    assert (
        client.post(
            f"{BASE}/entities", json={**aqo(1), **CTX}, headers={"Content-Type": "application/ld+json"}
        ).status_code
        == 201
    )
    r = client.post(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1/attrs?options=noOverwrite",
        json={"no2": {"type": "Property", "value": 1}, "pm25": {"type": "Property", "value": 9}, **CTX},
        headers={"Content-Type": "application/ld+json"},
    )
    assert r.status_code == 207
    assert r.json()["updated"] == ["https://uri.etsi.org/ngsi-ld/default-context/pm25"]
    assert [n["attributeName"] for n in r.json()["notUpdated"]] == [CTX["@context"]["no2"]]


def test_purge_by_id_keeps_the_named_attributes(client: TestClient) -> None:
    for i in (1, 2):
        assert (
            client.post(
                f"{BASE}/entities", json={**aqo(i), "pm25": {"type": "Property", "value": 9}}
            ).status_code
            == 201
        )
    one, two = "urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:2"
    assert client.delete(f"{BASE}/entities?id={one}&keep=no2").status_code == 204
    assert set(client.get(f"{BASE}/entities/{one}").json()) == {"id", "type", "no2"}
    assert "pm25" in client.get(f"{BASE}/entities/{two}").json()  # not named: untouched
    assert client.delete(f"{BASE}/entities?id={two}").status_code == 204
    assert client.get(f"{BASE}/entities/{two}").status_code == 404
    assert client.delete(f"{BASE}/entities").status_code == 400  # nothing named: refused
