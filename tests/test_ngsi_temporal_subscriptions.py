"""NGSI-LD history (temporal API over the lake) and subscriptions with real HTTP notifications."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from fastapi.testclient import TestClient

from citybase.api import Settings, create_app
from citybase.platform import CityBase
from citybase.testing import free_port as _free_port

BASE = "/ngsi-ld/v1"
EID = "urn:ngsi-ld:OffStreetParking:1"


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


def parking(spots: int, at: str) -> dict[str, Any]:
    return {"availableSpotNumber": {"type": "Property", "value": spots, "observedAt": at}}


def test_history_is_in_the_lake_and_aggregates(client: TestClient, cb: CityBase) -> None:
    body = {"id": EID, "type": "OffStreetParking", **parking(10, "2026-01-01T08:00:00Z")}
    assert client.post(f"{BASE}/entities", json=body).status_code == 201
    for spots, at in (
        (20, "2026-01-01T08:30:00Z"),
        (30, "2026-01-01T09:10:00Z"),
        (50, "2026-01-01T09:40:00Z"),
    ):
        r = client.patch(f"{BASE}/entities/{EID}/attrs", json=parking(spots, at))
        assert r.status_code == 204
    r = client.get(f"{BASE}/temporal/entities/{EID}?timerel=after&timeAt=2026-01-01T08:15:00Z")
    values = [i["value"] for i in r.json()["availableSpotNumber"]]
    assert values == [20, 30, 50]
    r = client.get(
        f"{BASE}/temporal/entities/{EID}",
        params={
            "options": "aggregatedValues",
            "aggrMethods": "avg,max,totalCount",
            "aggrPeriodDuration": "PT1H",
            "timerel": "between",
            "timeAt": "2026-01-01T08:00:00Z",
            "endTimeAt": "2026-01-01T10:00:00Z",
        },
    )
    agg = r.json()["availableSpotNumber"]
    assert agg["avg"] == [
        [15.0, "2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z"],
        [40.0, "2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z"],
    ]
    assert [m[0] for m in agg["max"]] == [20.0, 50.0] and [m[0] for m in agg["totalCount"]] == [2, 2]
    r = client.get(f"{BASE}/temporal/entities/{EID}?options=temporalValues&lastN=2")
    assert r.json()["availableSpotNumber"]["values"] == [
        [30, "2026-01-01T09:10:00Z"],
        [50, "2026-01-01T09:40:00Z"],
    ]
    # The same rows through the platform's own SQL: the history is lake data.
    n = cb.sql("SELECT count(*) AS n FROM lake.ngsi_ld_history WHERE entity_id = ?", [EID]).to_pylist()
    assert n == [{"n": 4}]


def test_temporal_delete_hides_history(client: TestClient) -> None:
    body = {
        "id": EID,
        "type": "OffStreetParking",
        "availableSpotNumber": [
            {"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"},
            {"type": "Property", "value": 2, "observedAt": "2026-01-01T01:00:00Z"},
        ],
    }
    assert client.post(f"{BASE}/temporal/entities", json=body).status_code == 201
    r = client.get(f"{BASE}/temporal/entities/{EID}")
    assert len(r.json()["availableSpotNumber"]) == 2
    assert client.delete(f"{BASE}/temporal/entities/{EID}").status_code == 204
    assert client.get(f"{BASE}/temporal/entities/{EID}").status_code == 404


def test_subscription_crud(client: TestClient) -> None:
    sub = {
        "type": "Subscription",
        "entities": [{"type": "OffStreetParking"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }
    r = client.post(f"{BASE}/subscriptions", json=sub)
    assert r.status_code == 201
    sid = r.headers["location"].rsplit("/", 1)[1]
    got = client.get(f"{BASE}/subscriptions/{sid}").json()
    assert got["status"] == "active" and got["entities"] == [{"type": "OffStreetParking"}]
    assert client.patch(f"{BASE}/subscriptions/{sid}", json={"isActive": False}).status_code == 204
    assert client.get(f"{BASE}/subscriptions/{sid}").json()["status"] == "paused"
    bad = {**sub, "timeInterval": 5, "throttling": 5}
    assert client.post(f"{BASE}/subscriptions", json=bad).status_code == 400
    assert client.delete(f"{BASE}/subscriptions/{sid}").status_code == 204
    assert client.get(f"{BASE}/subscriptions").json() == []


class _Listener(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Listener.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_notifications_reach_a_real_listener(cb: CityBase) -> None:
    """uvicorn on a real socket, a real HTTP listener: create, then update, then two notifications."""
    import httpx

    listener = HTTPServer(("127.0.0.1", 0), _Listener)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    port = _free_port()
    app = create_app(cb, Settings(root=cb.root, port=port, ngsi_ld_open_on_loopback=True), background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}{BASE}"
        sub = {
            "type": "Subscription",
            "entities": [{"type": "OffStreetParking"}],
            "watchedAttributes": ["availableSpotNumber"],
            "q": "availableSpotNumber<5",
            "notification": {
                "format": "keyValues",
                "endpoint": {
                    "uri": f"http://127.0.0.1:{listener.server_port}/notify",
                    "receiverInfo": [{"key": "X-City", "value": "beijing"}],
                },
            },
        }
        with httpx.Client() as http:
            assert http.post(f"{base}/subscriptions", json=sub).status_code == 201
            body = {"id": EID, "type": "OffStreetParking", **parking(3, "2026-01-01T08:00:00Z")}
            assert http.post(f"{base}/entities", json=body).status_code == 201
            r = http.patch(f"{base}/entities/{EID}/attrs", json=parking(40, "2026-01-01T08:05:00Z"))
            assert r.status_code == 204  # q no longer matches: no notification
            r = http.patch(f"{base}/entities/{EID}/attrs", json=parking(2, "2026-01-01T08:10:00Z"))
            assert r.status_code == 204
            deadline = time.time() + 10
            while len(_Listener.received) < 2 and time.time() < deadline:
                time.sleep(0.05)
        got = [
            (h.get("X-City"), b["data"][0]["availableSpotNumber"], b["triggerReason"])
            for h, b in _Listener.received
        ]
        assert got == [("beijing", 3, "attributeCreated"), ("beijing", 2, "attributeUpdated")]
        assert all(b["type"] == "Notification" for _, b in _Listener.received)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.shutdown()
        app.state.ngsi.close()


def test_mqtt_notifications_reach_a_real_broker(client: TestClient) -> None:
    """An mqtt:// endpoint: the notification is published to Mosquitto, where a subscriber reads it."""
    import uuid

    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    from test_iot_support import need_broker

    need_broker()
    topic = f"citybase-test/ngsi/{uuid.uuid4().hex}"
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    sub_client = Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    sub_client.on_connect = lambda c, *_: (c.subscribe(topic, qos=1), ready.set())
    sub_client.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
    sub_client.connect("127.0.0.1", 1883)
    sub_client.loop_start()
    try:
        assert ready.wait(10)
        time.sleep(0.2)  # the SUBSCRIBE is acknowledged
        sub = {
            "type": "Subscription",
            "entities": [{"type": "OffStreetParking"}],
            "notification": {
                "format": "keyValues",
                "endpoint": {
                    "uri": f"mqtt://127.0.0.1:1883/{topic}",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                },
            },
        }
        assert client.post(f"{BASE}/subscriptions", json=sub).status_code == 201
        body = {"id": EID, "type": "OffStreetParking", **parking(7, "2026-01-01T08:00:00Z")}
        assert client.post(f"{BASE}/entities", json=body).status_code == 201
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sub_client.loop_stop()
        sub_client.disconnect()
    assert len(got) == 1
    note = got[0]["body"]
    assert note["type"] == "Notification" and note["data"][0]["availableSpotNumber"] == 7
    assert note["data"][0]["id"] == EID


def test_deleting_a_temporal_attribute_takes_the_default_instances_only(client: TestClient) -> None:
    """DELETE .../attrs/{attr} without datasetId removes the default instances and keeps those of
    other datasets (ETSI 015_01_01); deleteAll removes every one."""
    fuel = [
        {"type": "Property", "value": 67, "observedAt": "2020-09-01T12:03:00Z"},
        {"type": "Property", "value": 53, "observedAt": "2020-09-01T13:05:00Z"},
        {"type": "Property", "value": 40, "observedAt": "2020-09-01T14:07:00Z", "datasetId": "urn:fuel"},
    ]
    eid = "urn:ngsi-ld:Vehicle:1"
    body = {"id": eid, "type": "Vehicle", "fuelLevel": fuel, "speed": [fuel[0]]}
    assert client.post(f"{BASE}/temporal/entities", json=body).status_code == 201
    assert client.delete(f"{BASE}/temporal/entities/{eid}/attrs/fuelLevel").status_code == 204
    got = client.get(f"{BASE}/temporal/entities/{eid}").json()
    assert [(i["value"], i.get("datasetId")) for i in got["fuelLevel"]] == [(40, "urn:fuel")]
    assert client.delete(f"{BASE}/temporal/entities/{eid}/attrs/fuelLevel").status_code == 404  # gone
    assert client.delete(f"{BASE}/temporal/entities/{eid}/attrs/fuelLevel?deleteAll=true").status_code == 204
    assert "fuelLevel" not in client.get(f"{BASE}/temporal/entities/{eid}").json()


def test_a_temporal_query_picking_only_core_members_lists_every_entity(client: TestClient) -> None:
    """pick=id keeps each entity and none of its attributes (ETSI 021_21_03); attrs that match
    nothing still match no entity."""
    for i in (1, 2):
        body = {
            "id": f"urn:ngsi-ld:Vehicle:{i}",
            "type": "Vehicle",
            "speed": [parking(3, "2020-01-01T00:00:00Z")["availableSpotNumber"]],
        }
        assert client.post(f"{BASE}/temporal/entities", json=body).status_code == 201
    when = "type=Vehicle&timerel=after&timeAt=1970-01-01T00:00:00Z"
    assert client.get(f"{BASE}/temporal/entities?{when}&pick=id").json() == [
        {"id": "urn:ngsi-ld:Vehicle:1"},
        {"id": "urn:ngsi-ld:Vehicle:2"},
    ]
    assert client.get(f"{BASE}/temporal/entities?{when}&attrs=fuelLevel").json() == []


def test_a_temporal_query_by_attrs_and_dataset_matches_only_entities_with_such_instances(
    client: TestClient,
) -> None:
    """attrs and datasetId together: an entity whose asked-for attributes have no instance of the
    datasets is left out (ETSI 021_18_07), one that has some is kept with just those."""
    speed = parking(3, "2020-01-01T00:00:00Z")["availableSpotNumber"]
    body = {
        "id": "urn:ngsi-ld:Vehicle:1",
        "type": "Vehicle",
        "speed": [speed, {**speed, "datasetId": "urn:gps"}],
    }
    assert client.post(f"{BASE}/temporal/entities", json=body).status_code == 201
    when = "type=Vehicle&timerel=after&timeAt=1970-01-01T00:00:00Z&attrs=speed"
    assert client.get(f"{BASE}/temporal/entities?{when}&datasetId=urn:fuel").json() == []
    got = client.get(f"{BASE}/temporal/entities?{when}&datasetId=urn:gps").json()
    assert [i["datasetId"] for i in got[0]["speed"]] == ["urn:gps"]


def test_a_temporal_query_orders_by_when_entities_were_created(client: TestClient) -> None:
    """orderBy=createdAt follows creation, not ids (ETSI 021_23_03)."""
    for i in (2, 1, 3):
        body = {
            "id": f"urn:ngsi-ld:Building:{i}",
            "type": "Building",
            "name": {"type": "Property", "value": f"b{i}"},
        }
        assert client.post(f"{BASE}/entities", json=body).status_code == 201
        time.sleep(0.005)  # (createdAt has milliseconds: no two alike)
    when = "type=Building&timerel=after&timeAt=1970-01-01T00:00:00Z&timeproperty=createdAt"
    got = client.get(f"{BASE}/temporal/entities?{when}&orderBy=createdAt").json()
    assert [e["id"][-1] for e in got] == ["2", "1", "3"]
    got = client.get(f"{BASE}/temporal/entities?{when}&orderBy=id").json()
    assert [e["id"][-1] for e in got] == ["1", "2", "3"]
