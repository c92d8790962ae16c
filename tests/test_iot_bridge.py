"""The MQTT bridge against the real Mosquitto at 127.0.0.1:1883: telemetry in, queryable out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from citybase.iot import ALARMS, latest_state
from citybase.iot.bridge import MqttBridge
from citybase.platform import CityBase
from test_iot_support import (
    SYSTEM_BROKER,
    Publisher,
    count,
    make_platform,
    need_broker,
    pm25_rule,
    running_bridge,
    topic,
    wait_for,
    wipe_session,
)

URL = f"mqtt://{SYSTEM_BROKER[0]}:{SYSTEM_BROKER[1]}"
T0 = 1_764_000_000  # 2025-11-24T16:00:00Z


@pytest.fixture
def cb(tmp_path: Path) -> Iterator[CityBase]:
    need_broker()
    with make_platform(tmp_path / "base") as cb:
        yield cb


@pytest.fixture
def bridge(cb: CityBase) -> Iterator[MqttBridge]:
    client_id = f"citybase-test-{uuid4().hex[:8]}"
    try:
        with running_bridge(cb, URL, client_id) as b:
            yield b
    finally:
        wipe_session(SYSTEM_BROKER[1], client_id)


@pytest.fixture
def pub() -> Iterator[Publisher]:
    p = Publisher(SYSTEM_BROKER[1])
    yield p
    p.close()


def test_telemetry_is_queryable_with_place_keys(cb: CityBase, bridge: MqttBridge, pub: Publisher) -> None:
    pub.send(topic(0), {"ts": T0, "pm25": 35.5, "t": 215, "status": "ok"})
    pub.send(topic(1), {"ts": "2025-11-25T00:00:10+08:00", "pm25": 40.0})
    wait_for(lambda: count(cb) == 2, what="2 rows in the lake")
    rows = cb.sql(
        "SELECT device, epoch(ts)::BIGINT AS ts, pm25, temp, status, district, h3 IS NOT NULL AS h3 "
        "FROM lake.air ORDER BY device"
    ).to_pylist()
    assert rows == [
        {"device": "aq-0", "ts": T0, "pm25": 35.5, "temp": 21.5, "status": "ok", "district": "W", "h3": True},
        {
            "device": "aq-1",
            "ts": T0 + 10,
            "pm25": 40.0,
            "temp": None,
            "status": None,
            "district": "E",
            "h3": True,
        },
    ]
    assert bridge.stats.acked == 2 and bridge.stats.quarantined == 0


def test_batch_array_and_receive_time(cb: CityBase, bridge: MqttBridge, pub: Publisher) -> None:
    pub.send(topic(2), [{"ts": T0 + i, "pm25": float(i)} for i in range(5)])
    pub.send(topic(0), {"pm25": 1.0})  # no ts: the time it was received
    wait_for(lambda: count(cb) == 6, what="6 rows")
    got = cb.sql("SELECT count(*) AS n, max(pm25) AS m FROM lake.air WHERE device = 'aq-2'").to_pylist()
    assert got == [{"n": 5, "m": 4.0}]
    recent = cb.sql("SELECT ts > now() - INTERVAL 1 HOUR AS fresh FROM lake.air WHERE device = 'aq-0'")
    assert recent.to_pylist() == [{"fresh": True}]


def test_duplicate_delivery_is_stored_once(cb: CityBase, bridge: MqttBridge, pub: Publisher) -> None:
    msg = {"ts": T0 + 100, "pm25": 12.0}
    pub.send(topic(0), msg)
    pub.send(topic(0), msg)  # the same reading, delivered twice
    pub.send(topic(0), {"ts": T0 + 101, "pm25": 13.0})
    wait_for(lambda: bridge.stats.received >= 3, what="3 deliveries")
    assert count(cb) == 2
    assert cb.sql("SELECT pm25 FROM lake.air ORDER BY ts").to_pylist() == [{"pm25": 12.0}, {"pm25": 13.0}]


def test_unknown_devices_and_bad_payloads_are_quarantined(
    cb: CityBase, bridge: MqttBridge, pub: Publisher
) -> None:
    pub.send("citybase/eco/ghost-9/telemetry", {"pm25": 1.0})
    pub.send(topic(0), b"{not json")
    pub.send(topic(1), {"ts": T0, "pm25": "high"})
    pub.send(topic(2, dept="traffic"), {"ts": T0, "pm25": 1.0})  # aq-2 is eco's, not traffic's
    pub.send(topic(0), {"ts": T0, "pm25": 2.0})  # one good reading among them
    wait_for(lambda: bridge.stats.received >= 5, what="5 deliveries")
    assert count(cb) == 1
    q = {r["reason"]: r for r in cb.quarantine().to_pylist()}
    assert set(q) == {
        "citybase/eco/ghost-9/telemetry: unknown device 'ghost-9'",
        "citybase/eco/aq-0/telemetry: payload is not JSON (JSONDecodeError: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1))",
        "citybase/eco/aq-1/telemetry: 'pm25' is not a number",
        "citybase/traffic/aq-2/telemetry: device 'aq-2' belongs to department 'eco', not 'traffic'",
    }
    assert q["citybase/eco/ghost-9/telemetry: unknown device 'ghost-9'"]["dataset"] == "_mqtt"
    assert json.loads(q["citybase/eco/aq-1/telemetry: 'pm25' is not a number"]["raw"])["pm25"] == "high"
    assert (
        q[
            "citybase/eco/aq-0/telemetry: payload is not JSON (JSONDecodeError: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1))"
        ]["raw"]
        == "{not json"
    )
    assert bridge.stats.quarantined == 4 and bridge.stats.acked == 5


def test_latest_state_before_and_after_the_flush(cb: CityBase, bridge: MqttBridge, pub: Publisher) -> None:
    pub.send(topic(0), {"ts": T0, "pm25": 10.0})
    pub.send(topic(0), {"ts": T0 + 60, "pm25": 11.0, "status": "ok"})
    pub.send(topic(1), {"ts": T0 + 30, "pm25": 20.0})
    wait_for(lambda: bridge.stats.stored >= 3, what="3 rows durable")
    for flushed in (False, True):
        if flushed:
            cb.flush()
        state = {r["device"]: r for r in latest_state(cb).to_pylist()}
        assert set(state) == {"aq-0", "aq-1", "aq-2"}
        assert json.loads(state["aq-0"]["values"]) == {"pm25": 11.0, "temp": None, "status": "ok"}
        assert state["aq-0"]["ts"].timestamp() == T0 + 60
        assert (state["aq-0"]["district"], state["aq-1"]["district"]) == ("W", "E")
        assert state["aq-2"]["ts"] is None and state["aq-2"]["values"] is None
    assert latest_state(cb, department="traffic").num_rows == 0


def test_rules_raise_one_alarm_per_crossing(cb: CityBase, pub: Publisher) -> None:
    pm25_rule(cb, hysteresis=5)
    client_id = f"citybase-test-{uuid4().hex[:8]}"
    try:
        with running_bridge(cb, URL, client_id) as bridge:
            values = [50, 80, 90, 72, 60, 100]  # up (alarm), stays up, 72 inside the band, clears, up
            for i, v in enumerate(values):
                pub.send(topic(0), {"ts": T0 + i, "pm25": v})
            pub.send(topic(0), {"ts": T0 + 1, "pm25": 80})  # a redelivery of the first crossing
            pub.send(topic(1), {"ts": T0, "pm25": 76})  # another device: its own crossing
            wait_for(lambda: bridge.stats.received >= 8, what="8 deliveries")
    finally:
        wipe_session(SYSTEM_BROKER[1], client_id)
    cb.flush()
    got = cb.sql(
        f"SELECT device, value, epoch(ts)::BIGINT - {T0} AS dt, severity, district FROM lake.{ALARMS} "
        "ORDER BY device, ts"
    ).to_pylist()
    assert got == [
        {"device": "aq-0", "value": 80.0, "dt": 1, "severity": "warning", "district": "W"},
        {"device": "aq-0", "value": 100.0, "dt": 5, "severity": "warning", "district": "W"},
        {"device": "aq-1", "value": 76.0, "dt": 0, "severity": "warning", "district": "E"},
    ]
