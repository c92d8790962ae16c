"""Shared pieces of the IoT tests: a real Mosquitto (the system one, or our own for restarts), a small
city with devices, and a QoS 1 publisher. No tests here; the test_iot_* modules import from it."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from paho.mqtt.client import Client, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion
from shapely import box

from citybase.iot import (
    Device,
    DeviceRegistry,
    PayloadField,
    Rule,
    RuleBook,
    telemetry_dataset,
    telemetry_topic,
)
from citybase.iot.bridge import MqttBridge
from citybase.iot.mosquitto import Mosquitto, mosquitto_binary
from citybase.model.city import Level
from citybase.places.city import City, Layer
from citybase.platform import CityBase
from citybase.ports import listening

SYSTEM_BROKER = ("127.0.0.1", 1883)


def need_broker(host: str = SYSTEM_BROKER[0], port: int = SYSTEM_BROKER[1]) -> None:
    """Skip when Mosquitto is not reachable; under CI=true, fail instead (CI must run these)."""
    if listening(host, port):
        return
    msg = (
        f"Mosquitto is not reachable at {host}:{port}; start it with "
        "`mosquitto -d -c /etc/mosquitto/mosquitto.conf` (see docs/iot.md)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


class OwnBroker(Mosquitto):
    """A Mosquitto of our own with persistence on, so that it can be stopped and started again
    while it holds queued QoS 1 messages for a persistent session."""

    def __init__(self, folder: Path):
        super().__init__(folder, persistence=True)


def need_mosquitto_binary() -> None:
    if mosquitto_binary() is None:
        msg = "the mosquitto binary is not installed (apt-get install mosquitto)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class Publisher:
    """A QoS 1 publisher that waits until the broker has every message (PUBACK)."""

    def __init__(self, port: int, client_id: str = ""):
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: Any, qos: int = 1) -> None:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        info = self.client.publish(topic, body, qos=qos)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tiny_city() -> City:
    """Two districts side by side around (116.40, 39.90): west `W`, east `E`."""

    def layer(level: Level, codes: list[str], geoms: list[Any]) -> Layer:
        n = len(codes)
        return Layer(
            level,
            np.array(codes, object),
            np.array(codes, object),
            np.array([None] * n, object),
            np.array(geoms, object),
        )

    return City(
        "testcity",
        "Asia/Shanghai",
        layers={
            Level.district: layer(
                Level.district, ["W", "E"], [box(116.3, 39.8, 116.4, 40.0), box(116.4, 39.8, 116.5, 40.0)]
            ),
        },
    )


PAYLOAD = {
    "pm25": PayloadField(field="pm25"),
    "t": PayloadField(field="temp", scale=0.1),
    "status": PayloadField(field="status"),
}


def make_platform(root: Path, devices: int = 3, dept: str = "eco") -> CityBase:
    """A platform with the tiny city, an `air` series dataset and `devices` air sensors `aq-<i>`."""
    cb = CityBase(root)
    cb.setup_city(tiny_city())
    cb.registry.add_department(dept)
    cb.declare(telemetry_dataset("air", dept, "aq", {"pm25": "float", "temp": "float", "status": "string"}))
    reg = DeviceRegistry(cb.meta)
    for i in range(devices):
        reg.add(
            Device(
                id=f"aq-{i}",
                type="air_quality",
                department=dept,
                dataset="air",
                lon=116.35 if i % 2 == 0 else 116.45,  # even devices in W, odd in E
                lat=39.9,
                payload=PAYLOAD,
            )
        )
    return cb


def pm25_rule(cb: CityBase, **kw: Any) -> Rule:
    rule = Rule(id="pm25-high", dataset="air", field="pm25", op=">", value=75, department="eco", **kw)
    return RuleBook(cb.meta).add(rule)


def topic(i: int, dept: str = "eco") -> str:
    return telemetry_topic(dept, f"aq-{i}")


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def count(cb: CityBase, dataset: str = "air") -> int:
    """Rows queryable in the lake (after a flush, as the server's flusher does)."""
    cb.flush()
    row = cb.sql(f"SELECT count(*) FROM lake.{dataset}").to_pylist()[0]
    return int(next(iter(row.values())))


def wipe_session(port: int, client_id: str) -> None:
    """Drop a persistent session from the broker (clean_session connect), so tests leave no queues."""
    c = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=MQTTv311)
    try:
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


@contextlib.contextmanager
def running_bridge(cb: CityBase, url: str, client_id: str, **kw: Any) -> Iterator[MqttBridge]:
    b = MqttBridge(cb, url, client_id=client_id, batch_ms=kw.pop("batch_ms", 10), **kw)
    b.start()
    try:
        assert b.wait_connected(), f"bridge did not connect: {b.stats.last_error}"
        yield b
    finally:
        b.stop()
