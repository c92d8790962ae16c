"""HTTP routes of the IoT box: device registry, latest state and rules, with their access rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from citybase.api.app import create_app
from citybase.iot import telemetry_dataset
from citybase.platform import CityBase
from test_iot_support import make_platform

T0 = 1_764_000_000


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str]):
        self.client, self.keys = client, keys

    def __call__(self, method: str, path: str, who: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return self.client.request(method, f"/api/v1/iot{path}", headers=headers, **kw)


@pytest.fixture
def cb(tmp_path: Path) -> Iterator[CityBase]:
    with make_platform(tmp_path / "base") as cb:
        cb.registry.add_department("traffic")
        cb.registry.add_department("ops")
        cb.declare(telemetry_dataset("loops", "traffic", "scats", {"flow": "int"}))
        yield cb


@pytest.fixture
def api(cb: CityBase) -> Iterator[Api]:
    keys = {
        "eco": cb.registry.issue_key("eco").key,
        "traffic": cb.registry.issue_key("traffic").key,
        "ops": cb.registry.issue_key("ops", role="admin").key,
    }
    with TestClient(create_app(cb, background=False)) as client:
        yield Api(client, keys)


LOOP = {
    "id": "loop-1",
    "type": "traffic_loop",
    "department": "traffic",
    "dataset": "loops",
    "lon": 116.45,
    "lat": 39.95,
    "payload": {"q": "flow"},
}


def test_keys_are_required(api: Api) -> None:
    for method, path in [("GET", "/devices"), ("GET", "/state"), ("GET", "/rules"), ("POST", "/devices")]:
        r = api(method, path, None)
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unauthorized"


def test_a_department_manages_its_own_devices(api: Api) -> None:
    r = api("POST", "/devices", "traffic", json=LOOP)
    assert r.status_code == 201, r.text
    assert r.json() == {**LOOP, "payload": {"q": {"field": "flow", "scale": 1.0}}, "description": ""}
    assert [d["id"] for d in api("GET", "/devices", "traffic").json()] == ["loop-1"]
    assert [d["id"] for d in api("GET", "/devices", "eco").json()] == ["aq-0", "aq-1", "aq-2"]
    assert len(api("GET", "/devices", "ops").json()) == 4
    # another department: 403 on its device, its listing, and on registering a device for it
    assert api("GET", "/devices/loop-1", "eco").status_code == 403
    assert api("DELETE", "/devices/loop-1", "eco").status_code == 403
    assert api("GET", "/devices?department=traffic", "eco").status_code == 403
    assert api("POST", "/devices", "eco", json=LOOP).status_code == 403
    assert api("POST", "/devices", "eco", json={**LOOP, "id": "x-1", "department": "eco"}).status_code == 400
    assert api("GET", "/devices/loop-1", "ops").status_code == 200
    assert api("DELETE", "/devices/loop-1", "traffic").status_code == 204
    assert api("GET", "/devices/loop-1", "traffic").status_code == 404


def test_bad_devices_are_refused_with_reasons(api: Api) -> None:
    r = api("POST", "/devices", "traffic", json={**LOOP, "dataset": "nope"})
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = api("POST", "/devices", "traffic", json={**LOOP, "payload": {"q": "ts"}})
    assert r.status_code == 400 and "not a measure" in r.json()["detail"]
    r = api("POST", "/devices", "traffic", json={**LOOP, "id": "a/b"})
    assert r.status_code == 422


def test_state_is_per_department(api: Api, cb: CityBase) -> None:
    api("POST", "/devices", "traffic", json=LOOP)
    ts = pa.array([T0 * 1_000_000]).cast(pa.timestamp("us", "UTC"))
    cb.ingest("air", pa.table({"device": ["aq-1"], "ts": ts, "pm25": [9.5], "lon": [116.45], "lat": [39.9]}))
    r = api("GET", "/state", "eco")
    assert r.status_code == 200
    rows = {s["device"]: s for s in r.json()}
    assert set(rows) == {"aq-0", "aq-1", "aq-2"}
    assert rows["aq-1"]["values"] == {"pm25": 9.5, "temp": None, "status": None}
    assert rows["aq-1"]["ts"] == "2025-11-24T16:00:00"
    assert rows["aq-1"]["district"] == "E" and len(rows["aq-1"]["h3"]) == 15
    assert rows["aq-0"]["ts"] is None
    assert [s["device"] for s in api("GET", "/state", "traffic").json()] == ["loop-1"]
    assert api("GET", "/state?department=eco", "traffic").status_code == 403
    assert len(api("GET", "/state", "ops").json()) == 4
    assert [s["device"] for s in api("GET", "/state?department=traffic", "ops").json()] == ["loop-1"]


def test_rules_crud(api: Api) -> None:
    rule = {
        "id": "jam",
        "dataset": "loops",
        "field": "flow",
        "op": ">=",
        "value": 1800,
        "severity": "critical",
    }
    r = api("POST", "/rules", "traffic", json=rule)
    assert r.status_code == 201, r.text
    assert r.json()["department"] == "traffic"
    assert api("POST", "/rules", "eco", json=rule).status_code == 403
    assert api("POST", "/rules", "traffic", json={**rule, "field": "device"}).status_code == 400
    assert api("POST", "/rules", "traffic", json={**rule, "op": "~"}).status_code == 422
    assert [x["id"] for x in api("GET", "/rules", "traffic").json()] == ["jam"]
    assert api("GET", "/rules", "eco").json() == []
    assert api("GET", "/rules/jam", "eco").status_code == 403
    assert api("DELETE", "/rules/jam", "eco").status_code == 403
    assert api("GET", "/rules/jam", "ops").json()["value"] == 1800
    assert api("DELETE", "/rules/jam", "traffic").status_code == 204
    assert api("GET", "/rules", "ops").json() == []
