"""The operations queue: its state machine, who may move an event, and events arriving from the lake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from citybase import CityBase
from citybase.console.testing import console_app
from citybase.ops import MOVES, Status, can_move

HOTLINE = {
    "name": "hotline_events",
    "department": "citizen-service",
    "system": "hotline",
    "kind": "points",
    "fields": [
        {"name": "event_id", "required": True},
        {"name": "reported_at", "type": "timestamp", "required": True},
        {"name": "category"},
        {"name": "description"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
    ],
    "time_field": "reported_at",
    "geometry": {"lon": "lon", "lat": "lat"},
    "key": ["event_id"],
}


def complaint(i: int) -> dict[str, Any]:
    return {
        "event_id": f"HL{i:04d}",
        "reported_at": f"2026-11-23 08:{i % 60:02d}:00",
        "category": "noise" if i % 2 else "garbage",
        "description": f"complaint {i}",
        "lon": 116.40 + i / 1000,
        "lat": 39.90,
    }


class Ops:
    """A platform with an operator, three departments' keys and a TestClient on the API."""

    def __init__(self, root: Path) -> None:
        self.cb = CityBase.open(root)
        for d in ("city", "citizen-service", "water", "roads"):
            self.cb.registry.add_department(d)
        reg = self.cb.registry
        self.keys = {
            "admin": reg.issue_key("city", role="admin").key,
            "hotline": reg.issue_key("citizen-service").key,
            "water": reg.issue_key("water").key,
            "roads": reg.issue_key("roads").key,
        }
        self.client = TestClient(console_app(self.cb, background=False))

    def call(self, method: str, path: str, who: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return self.client.request(method, f"/api/v1/ops{path}", headers=headers, **kw)


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[Ops]:
    o = Ops(tmp_path / "base")
    with o.client:
        yield o
    o.cb.close()


def new(o: Ops, title: str = "burst pipe") -> str:
    r = o.call("POST", "/events", "admin", json={"title": title, "lon": 116.4, "lat": 39.9})
    assert r.status_code == 201, r.text
    ev_id: str = r.json()["id"]
    return ev_id


def test_the_state_machine_allows_only_its_moves() -> None:
    assert can_move(Status.dispatched, Status.in_progress)
    assert can_move(Status.in_progress, Status.closed)
    assert can_move(Status.closed, Status.reopened)
    assert not can_move(Status.requested, Status.in_progress)
    assert not can_move(Status.closed, Status.in_progress)
    assert MOVES[Status.requested] == frozenset()


def test_an_event_goes_from_the_operator_to_a_department_and_is_closed(ops: Ops) -> None:
    ev = new(ops)
    r = ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": "water", "note": "urgent"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["department"]) == ("dispatched", "water")
    for status in ("in_progress", "closed"):
        r = ops.call("POST", f"/events/{ev}/status", "water", json={"status": status})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
    hist = ops.call("GET", f"/events/{ev}", "water").json()["history"]
    assert [(h["by"], h["action"], h["status_to"]) for h in hist] == [
        ("city", "created", "requested"),
        ("city", "dispatched", "dispatched"),
        ("water", "status", "in_progress"),
        ("water", "status", "closed"),
    ]
    assert hist[1]["note"] == "urgent" and hist[1]["department"] == "water"


def test_a_closed_event_is_reopened_and_dispatched_again(ops: Ops) -> None:
    ev = new(ops)
    ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": "water"})
    ops.call("POST", f"/events/{ev}/status", "water", json={"status": "closed"})
    r = ops.call("POST", f"/events/{ev}/status", "water", json={"status": "in_progress"})
    assert r.status_code == 409 and "reopened" in r.json()["detail"]
    assert ops.call("POST", f"/events/{ev}/status", "water", json={"status": "reopened"}).json()[
        "status"
    ] == ("reopened")
    r = ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": "roads"})
    assert (r.json()["status"], r.json()["department"]) == ("dispatched", "roads")
    # The department it was taken from no longer sees it.
    assert ops.call("GET", f"/events/{ev}", "water").status_code == 404


def test_who_may_do_what(ops: Ops) -> None:
    assert ops.call("POST", "/events", "water", json={"title": "x"}).status_code == 403
    assert ops.call("GET", "/events", None).status_code == 401
    ev = new(ops)
    # Dispatching is the operator's: 403 for any department, whatever the event.
    assert (
        ops.call("POST", f"/events/{ev}/dispatch", "water", json={"department": "water"}).status_code == 403
    )
    bad = ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": "nobody"})
    assert bad.status_code == 400
    ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": "water"})
    # Another department: the event does not exist for it.
    assert ops.call("GET", f"/events/{ev}", "roads").status_code == 404
    assert ops.call("POST", f"/events/{ev}/status", "roads", json={"status": "closed"}).status_code == 404
    # The department it went to may not re-dispatch it.
    r = ops.call("POST", f"/events/{ev}/dispatch", "water", json={"department": "roads"})
    assert r.status_code == 403
    # Not yet dispatched: no status move is allowed.
    ev2 = new(ops, "pothole")
    assert ops.call("POST", f"/events/{ev2}/status", "admin", json={"status": "closed"}).status_code == 409
    assert ops.call("POST", "/sync", "water").status_code == 403


def test_each_department_sees_its_own_queue(ops: Ops) -> None:
    evs = [new(ops, f"e{i}") for i in range(5)]
    for ev, dept in zip(evs, ["water", "water", "roads", None, None], strict=True):
        if dept:
            ops.call("POST", f"/events/{ev}/dispatch", "admin", json={"department": dept})
    assert {e["id"] for e in ops.call("GET", "/events", "water").json()} == set(evs[:2])
    assert {e["id"] for e in ops.call("GET", "/events", "roads").json()} == {evs[2]}
    assert len(ops.call("GET", "/events", "admin").json()) == 5
    waiting = ops.call("GET", "/events", "admin", params={"status": "requested"}).json()
    assert {e["id"] for e in waiting} == set(evs[3:])
    assert ops.call("GET", "/counts", "admin").json() == {
        "requested": 2,
        "dispatched": 3,
        "in_progress": 0,
        "closed": 0,
        "reopened": 0,
    }
    assert ops.call("GET", "/counts", "roads").json()["dispatched"] == 1


def test_hotline_rows_and_alarms_arrive_in_the_queue_once(ops: Ops) -> None:
    cb = ops.cb
    cb.declare(HOTLINE)
    cb.ingest("hotline_events", [complaint(i) for i in range(3)])
    cb.flush()
    assert ops.call("POST", "/sync", "admin").json() == {"added": 3}
    assert ops.call("POST", "/sync", "admin").json() == {"added": 0}
    cb.ingest("hotline_events", [complaint(3), complaint(0)])  # one new, one a duplicate
    cb.flush()
    assert ops.call("POST", "/sync", "admin").json() == {"added": 1}
    events = ops.call("GET", "/events", "admin").json()
    assert sorted(e["source_id"] for e in events) == ["HL0000", "HL0001", "HL0002", "HL0003"]
    e = next(e for e in events if e["source_id"] == "HL0001")
    assert (e["source"], e["title"], e["description"]) == ("hotline", "noise", "complaint 1")
    assert e["lon"] == pytest.approx(116.401)
    assert e["occurred_at"].startswith("2026-11-23T")


def test_alarms_from_iot_rules_arrive_as_events(ops: Ops) -> None:
    from citybase.iot.rules import alarms_dataset

    cb = ops.cb
    cb.declare(alarms_dataset())
    row = {
        "rule": "pm25-high",
        "device": "aq-7",
        "department": "eco",
        "dataset": "air",
        "field": "pm25",
        "op": ">",
        "threshold": 150.0,
        "value": 180.0,
        "severity": "major",
        "ts": "2026-11-23 09:00:00",
        "lon": 116.41,
        "lat": 39.91,
    }
    cb.ingest("iot_alarms", [row])
    cb.flush()
    assert ops.call("POST", "/sync", "admin").json() == {"added": 1}
    (e,) = ops.call("GET", "/events", "admin").json()
    assert e["source"] == "alarm" and e["category"] == "major"
    assert e["title"] == "pm25-high: pm25 > 150.0 (value 180.0)"


def test_the_cli_lists_dispatches_and_closes(tmp_path: Path) -> None:
    from citybase.cli.ops import ops_app

    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        cb.registry.add_department("water")
    runner = CliRunner()
    assert runner.invoke(ops_app, ["--help"]).exit_code == 0
    for cmd in ("list", "show", "add", "dispatch", "status", "sync"):
        r = runner.invoke(ops_app, [cmd, "--help"])
        assert r.exit_code == 0 and "--root" in r.output, cmd
    r = runner.invoke(ops_app, ["add", "burst pipe", "--root", str(root)])
    assert r.exit_code == 0, r.output
    ev = r.output.split()[-1]
    assert runner.invoke(ops_app, ["dispatch", ev, "water", "--root", str(root)]).exit_code == 0
    r = runner.invoke(ops_app, ["status", ev, "closed", "--root", str(root), "--as", "roads"])
    assert r.exit_code == 1 and "no event" in r.output
    r = runner.invoke(ops_app, ["status", ev, "closed", "--root", str(root), "--as", "water"])
    assert r.exit_code == 0 and "closed" in r.output
    r = runner.invoke(ops_app, ["list", "--root", str(root), "--json"])
    assert '"status": "closed"' in r.output
