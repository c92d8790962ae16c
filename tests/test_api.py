"""The HTTP API's own rules: keys, tenants, batch ingest in four formats, limits, errors, metrics."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient

from citybase import CityBase
from citybase.api import Settings, create_app
from citybase.testing import free_port

AIR = {
    "name": "air",
    "department": "eco",
    "system": "aq",
    "kind": "series",
    "fields": [
        {"name": "station", "required": True},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "pm25", "type": "float", "min": 0, "unit": "µg/m³"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
    ],
    "time_field": "ts",
    "object_field": "station",
    "geometry": {"lon": "lon", "lat": "lat"},
    "key": ["station", "ts"],
}


class World:
    """A platform with three departments and keys of every kind."""

    def __init__(self, root: Path, settings: Settings | None = None):
        self.cb = CityBase.open(root)
        reg = self.cb.registry
        for d in ("city", "eco", "ps"):
            reg.add_department(d)
        reg.add_system("eco", "aq")
        reg.add_system("eco", "water")
        self.keys = {
            "admin": reg.issue_key("city", role="admin").key,
            "eco": reg.issue_key("eco").key,
            "eco_aq": reg.issue_key("eco", system="aq").key,
            "eco_water": reg.issue_key("eco", system="water").key,
            "ps": reg.issue_key("ps").key,
        }
        revoked = reg.issue_key("eco")
        reg.revoke_key(revoked.info.key_id)
        self.keys["revoked"] = revoked.key
        self.keys["expired"] = reg.issue_key("eco", expires_at=datetime.now() - timedelta(days=400)).key
        self.keys["wrong"] = self.keys["eco"][:-4] + "AAAA"
        self.keys["malformed"] = "letmein"
        self.cb.declare(AIR)
        self.client = TestClient(create_app(self.cb, settings or Settings(root=root), background=False))

    def h(self, who: str | None, **extra: str) -> dict[str, str]:
        out = dict(extra)
        if who is not None:
            out["Authorization"] = f"Bearer {self.keys[who]}"
        return out

    def flush(self) -> None:
        self.cb.flush()

    def rows(self) -> list[dict[str, Any]]:
        self.flush()
        return self.cb.sql("SELECT station, ts, pm25 FROM lake.air ORDER BY station, ts").to_pylist()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.client.close()
    w.cb.close()


def air_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "station": f"s{i % 7}",
            "ts": f"2026-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
            "pm25": float(i % 90),
            "lon": 116.3 + i % 10 / 100,
            "lat": 39.9,
        }
        for i in range(start, start + n)
    ]


# -- authentication and tenants -------------------------------------------------------------------

ALL = ["admin", "eco", "eco_aq", "eco_water", "ps", "revoked", "expired", "wrong", "malformed", None]
#: (method, path, body) -> who gets which status. Anyone not named gets the default.
CASES: list[tuple[str, str, Any, dict[str | None, int], int]] = [
    (
        "GET",
        "/api/v1/datasets",
        None,
        {"admin": 200, "eco": 200, "eco_aq": 200, "eco_water": 200, "ps": 200},
        401,
    ),
    (
        "GET",
        "/api/v1/datasets/air",
        None,
        {"admin": 200, "eco": 200, "eco_aq": 200, "eco_water": 200, "ps": 200},
        401,
    ),
    (
        "GET",
        "/api/v1/departments",
        None,
        {"admin": 200, "eco": 200, "eco_aq": 200, "eco_water": 200, "ps": 200},
        401,
    ),
    (
        "POST",
        "/api/v1/datasets/air/rows",
        air_rows(2),
        {"admin": 201, "eco": 201, "eco_aq": 201, "eco_water": 403, "ps": 403},
        401,
    ),
    (
        "POST",
        "/api/v1/departments",
        {"id": "hrss", "name": "HRSS"},
        {"admin": 201, "eco": 403, "eco_aq": 403, "eco_water": 403, "ps": 403},
        401,
    ),
    (
        "POST",
        "/api/v1/keys",
        {"department": "ps", "role": "admin"},
        {"admin": 201, "eco": 403, "eco_aq": 403, "eco_water": 403, "ps": 403},
        401,
    ),
    ("GET", "/metrics", None, {"admin": 200, "eco": 403, "eco_aq": 403, "eco_water": 403, "ps": 403}, 401),
    ("GET", "/health", None, {}, 200),
    ("GET", "/ready", None, {}, 200),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "expect", "default"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES]
)
def test_who_may_do_what(
    world: World, method: str, path: str, body: Any, expect: dict[str | None, int], default: int
) -> None:
    for who in ALL:
        r = world.client.request(method, path, json=body, headers=world.h(who))
        want = expect.get(who, default)
        assert r.status_code == want, (who, r.status_code, r.text)
        if want == 401:
            assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"


def test_the_key_may_also_come_as_x_api_key(world: World) -> None:
    assert world.client.get("/api/v1/datasets", headers={"X-API-Key": world.keys["eco"]}).status_code == 200


def test_a_401_says_the_same_for_an_unknown_key_id_and_a_wrong_secret(world: World) -> None:
    other_id = "cbk_" + "0" * 16 + "_" + world.keys["eco"].split("_", 2)[2]  # (a secret may hold "_")
    a = world.client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {other_id}"})
    b = world.client.get("/api/v1/datasets", headers=world.h("wrong"))
    assert a.status_code == b.status_code == 401 and a.json() == b.json()


def test_revocation_and_rotation_take_effect_at_once(world: World) -> None:
    c, reg = world.client, world.cb.registry
    eco_id = next(k.key_id for k in reg.keys("eco") if k.active and k.system is None)
    assert c.get("/api/v1/datasets", headers=world.h("eco")).status_code == 200
    r = c.post(f"/api/v1/keys/{eco_id}/rotate", headers=world.h("eco"))
    assert r.status_code == 201
    new = r.json()["key"]
    assert c.get("/api/v1/datasets", headers=world.h("eco")).status_code == 401
    assert c.get("/api/v1/datasets", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    new_id = r.json()["key_id"]
    assert c.delete(f"/api/v1/keys/{new_id}", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert c.get("/api/v1/datasets", headers={"Authorization": f"Bearer {new}"}).status_code == 401


def test_a_department_sees_and_manages_only_its_own_keys(world: World) -> None:
    c, reg = world.client, world.cb.registry
    listed = {k["department"] for k in c.get("/api/v1/keys", headers=world.h("ps")).json()}
    assert listed == {"ps"}
    eco_id = next(k.key_id for k in reg.keys("eco") if k.active)
    admin_id = next(k.key_id for k in reg.keys("city"))
    # Another tenant's key and a missing key look the same.
    a = c.delete(f"/api/v1/keys/{eco_id}", headers=world.h("ps"))
    b = c.delete("/api/v1/keys/ffffffffffffffff", headers=world.h("ps"))
    assert a.status_code == b.status_code == 404
    assert a.json()["detail"].replace(eco_id, "X") == b.json()["detail"].replace("ffffffffffffffff", "X")
    assert c.delete(f"/api/v1/keys/{admin_id}", headers=world.h("ps")).status_code == 404
    assert all(k.active for k in reg.keys("eco") if k.key_id == eco_id)


def test_a_department_declares_only_its_own_datasets(world: World) -> None:
    c = world.client
    spec = {**AIR, "name": "noise", "department": "ps"}
    assert c.post("/api/v1/datasets", json=spec, headers=world.h("eco")).status_code == 403
    assert c.post("/api/v1/datasets", json=spec, headers=world.h("ps")).status_code == 201
    assert "noise" in world.cb.datasets
    bad = {**AIR, "name": "bad", "time_field": "nope"}
    r = c.post("/api/v1/datasets", json=bad, headers=world.h("eco"))
    assert r.status_code == 400 and "nope" in r.json()["detail"]


# -- ingest ---------------------------------------------------------------------------------------


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _arrow(rows: list[dict[str, Any]], file: bool = False) -> bytes:
    t = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with (pa.ipc.new_file if file else pa.ipc.new_stream)(sink, t.schema) as w:
        w.write_table(t)
    return bytes(sink.getvalue())


FORMATS = {
    "json": ("application/json", lambda rows: json.dumps(rows).encode()),
    "json-object": ("application/json", lambda rows: json.dumps({"rows": rows}).encode()),
    "ndjson": ("application/x-ndjson", lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    "csv": ("text/csv", _csv),
    "arrow-stream": ("application/vnd.apache.arrow.stream", _arrow),
    "arrow-file": ("application/vnd.apache.arrow.file", lambda rows: _arrow(rows, file=True)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_lands_the_same_rows(world: World, fmt: str) -> None:
    ctype, encode = FORMATS[fmt]
    rows = air_rows(50)
    r = world.client.post(
        "/api/v1/datasets/air/rows", content=encode(rows), headers=world.h("eco", **{"Content-Type": ctype})
    )
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == 50 and r.json()["rejected"] == []
    got = world.rows()
    want = sorted(
        ({"station": x["station"], "ts": datetime.fromisoformat(x["ts"]), "pm25": x["pm25"]} for x in rows),
        key=lambda x: (x["station"], x["ts"]),
    )
    assert got == want


def test_bad_rows_are_reported_and_quarantined_good_rows_accepted(world: World) -> None:
    rows = air_rows(4)
    rows[1]["pm25"] = -5
    rows[2]["ts"] = "yesterday-ish"
    del rows[3]["station"]
    r = world.client.post("/api/v1/datasets/air/rows", json=rows, headers=world.h("eco"))
    assert r.status_code == 201
    body = r.json()
    assert body["accepted"] == 1
    got = {(x["line"], x["field"]) for x in body["rejected"]}
    assert got == {(2, "pm25"), (3, "ts"), (4, "station")}
    assert all(x["reason"] for x in body["rejected"])
    world.flush()
    q = world.cb.quarantine("air").to_pylist()
    assert {(x["line"], x["field"]) for x in q} == got
    assert all(x["source"] == "http:eco" for x in q)
    assert len(world.rows()) == 1


def test_an_idempotency_key_makes_a_retry_a_no_op_per_department(world: World) -> None:
    c, rows = world.client, air_rows(10)
    first = c.post(
        "/api/v1/datasets/air/rows", json=rows, headers=world.h("eco", **{"Idempotency-Key": "b-1"})
    )
    again = c.post(
        "/api/v1/datasets/air/rows", json=rows, headers=world.h("eco", **{"Idempotency-Key": "b-1"})
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True and again.json()["accepted"] == 0
    # Another department's key with the same idempotency key is a different batch.
    other = c.post(
        "/api/v1/datasets/air/rows",
        json=air_rows(3, 100),
        headers=world.h("admin", **{"Idempotency-Key": "b-1"}),
    )
    assert other.status_code == 201 and other.json()["accepted"] == 3
    assert len(world.rows()) == 13


@pytest.mark.parametrize(
    ("ctype", "body", "status", "says"),
    [
        ("application/json", b"{not json", 400, "not JSON"),
        ("application/json", b'{"a": 1}', 400, "array of row objects"),
        ("application/json", b"[1, 2]", 400, "row 0 is int"),
        ("application/x-ndjson", b'{"station": "a"}\n[1]\n', 400, "line 2"),
        ("application/x-ndjson", b'{"station": "a"}\n{oops\n', 400, "line 2"),
        ("text/csv", b'station,ts\n"unterminated,x\n', 400, "CSV"),
        ("application/vnd.apache.arrow.stream", b"not arrow at all", 400, "Arrow"),
        ("application/xml", b"<rows/>", 415, "text/csv"),
        ("application/json", b"\xff\xfe\x00", 400, "not JSON"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(
    world: World, ctype: str, body: bytes, status: int, says: str
) -> None:
    r = world.client.post(
        "/api/v1/datasets/air/rows", content=body, headers=world.h("eco", **{"Content-Type": ctype})
    )
    assert r.status_code == status, r.text
    assert says in json.dumps(r.json())
    assert world.cb.log.pending() == (0, 0)


def test_oversized_bodies_and_batches_get_413(tmp_path: Path) -> None:
    w = World(tmp_path, Settings(root=tmp_path, max_body_bytes=10_000, max_batch_rows=20))
    try:
        big = json.dumps(air_rows(200)).encode()
        r = w.client.post("/api/v1/datasets/air/rows", content=big, headers=w.h("eco"))
        assert r.status_code == 413 and "10,000" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        r = w.client.post("/api/v1/datasets/air/rows", content=chunks(), headers=w.h("eco"))
        assert r.status_code == 413
        r = w.client.post("/api/v1/datasets/air/rows", json=air_rows(21), headers=w.h("eco"))
        assert r.status_code == 413 and "split the batch" in r.json()["detail"]
        assert w.cb.log.pending() == (0, 0)
    finally:
        w.client.close()
        w.cb.close()


def test_unknown_dataset_is_404(world: World) -> None:
    r = world.client.post("/api/v1/datasets/nope/rows", json=air_rows(1), headers=world.h("eco"))
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_metrics_count_ingest_and_requests_and_logs_never_hold_keys(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    rows = air_rows(5)
    rows[0]["pm25"] = -1
    with caplog.at_level(logging.INFO, logger="citybase"):
        world.client.post("/api/v1/datasets/air/rows", json=rows, headers=world.h("eco"))
        text = world.client.get("/metrics", headers=world.h("admin")).text
    assert 'citybase_ingest_rows_total{dataset="air",source="http"} 4.0' in text
    assert 'citybase_quarantine_rows_total{dataset="air",source="http"} 1.0' in text
    assert 'route="/api/v1/datasets/{name}/rows",status="201"' in text
    assert "citybase_ingest_lag_seconds" in text
    logged = "\n".join(json.dumps(getattr(r, "fields", {})) + r.getMessage() for r in caplog.records)
    assert '"department": "eco"' in logged
    for key in world.keys.values():
        assert key not in logged and key.split("_", 2)[-1] not in logged  # (a secret may hold "_")


def test_the_openapi_document_describes_ingest_and_security(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/datasets/{name}/rows"]["post"]
    assert set(op["requestBody"]["content"]) >= {
        "application/json",
        "text/csv",
        "application/vnd.apache.arrow.stream",
    }
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])


# -- a 2xx means durable: kill -9 the server right after it answers -------------------------------


SERVER = """
import sys, uvicorn
from citybase import CityBase
from citybase.api import Settings, create_app
cb = CityBase.open(sys.argv[1])
uvicorn.run(create_app(cb, Settings(root=sys.argv[1], flush_interval=3600)), host="127.0.0.1",
            port=int(sys.argv[2]), log_config=None)
"""


def test_acknowledged_rows_survive_kill_minus_nine(tmp_path: Path) -> None:
    w = World(tmp_path)
    key = w.keys["eco"]
    w.client.close()
    w.cb.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path), str(port)], stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        acked = 0
        for b in range(20):
            r = httpx.post(
                f"{url}/api/v1/datasets/air/rows",
                json=air_rows(100, b * 100),
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 201
            acked += r.json()["accepted"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with CityBase.open(tmp_path) as cb:  # replays the log into the lake
        n = cb.sql("SELECT count(*) AS n FROM lake.air").to_pylist()[0]["n"]
    assert acked == 2000 and n == acked


def test_a_key_expiry_with_a_time_zone_is_understood(world: World) -> None:
    """An aware expiry (as JSON clients send it) is stored as UTC; it once broke the comparison."""
    c, admin = world.client, world.h("admin")
    soon = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
    r = c.post("/api/v1/keys", headers=admin, json={"department": "eco", "expires_at": soon.isoformat()})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert c.get("/api/v1/datasets", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    past = datetime.now(UTC) - timedelta(minutes=1)
    r = c.post("/api/v1/keys", headers=admin, json={"department": "eco", "expires_at": past.isoformat()})
    assert r.status_code == 201, r.text
    expired = {"Authorization": f"Bearer {r.json()['key']}"}
    assert c.get("/api/v1/datasets", headers=expired).status_code == 401


def test_settings_from_a_file_then_the_environment(tmp_path: Path) -> None:
    from citybase.errors import DeclarationError
    from citybase.platform import HISTORY

    f = tmp_path / "server.yaml"
    f.write_text("port: 9000\nhistory: 3600\nthreads: 2\n", encoding="utf-8")
    env = {
        "CITYBASE_PORT": "9100",
        "CITYBASE_HISTORY": "null",
        "CITYBASE_NGSI_LD_CONTEXTS": '{"u": "c.jsonld"}',
    }
    s = Settings.load(f, env=env)
    assert (s.port, s.history, s.threads) == (9100, None, 2)  # null: keep all history
    assert s.ngsi_ld_contexts == {"u": Path("c.jsonld")}
    assert Settings.load(None, env={}).history == HISTORY.total_seconds()
    with pytest.raises(DeclarationError, match="history"):
        Settings.load(None, env={"CITYBASE_HISTORY": "-1"})
    with pytest.raises(DeclarationError, match="port"):
        Settings.load(None, env={"CITYBASE_PORT": "null"})  # not a setting that can be None


def test_the_maintainer_merges_forgets_history_and_counts_it(tmp_path: Path) -> None:
    from citybase.api.app import Maintainer
    from citybase.api.observe import Metrics

    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(AIR)
        for h in range(4):
            cb.ingest(
                "air",
                [{"station": "s1", "ts": f"2026-11-24 0{h}:00:00", "pm25": h, "lon": 116.4, "lat": 39.9}],
            )
            cb.flush()
        metrics = Metrics()
        m = Maintainer(cb, metrics, interval=0.05, history=0)

        def done(action: str) -> float:
            v = metrics.registry.get_sample_value("citybase_maintenance_total", {"action": action})
            return v or 0.0

        m.start()
        deadline = time.monotonic() + 30
        while done("removed") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        m.stop()
        assert done("merged") >= 4
        assert done("removed") >= 4
        assert done("expired") > 0
        assert len(cb.lake.data_files("air")) == 1
        assert cb.sql("SELECT count(*) AS n FROM lake.air").column("n")[0].as_py() == 4
