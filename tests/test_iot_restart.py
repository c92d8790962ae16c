"""No loss of what the broker holds: bridge away, broker restarted, batches not yet durable.

Each test runs its own Mosquitto (persistence on, no queue limits) on a free port, so that it can
be stopped and started while it holds queued QoS 1 messages for the bridge's persistent session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citybase.iot.bridge import MqttBridge
from citybase.platform import CityBase
from test_iot_support import (
    OwnBroker,
    Publisher,
    count,
    make_platform,
    need_mosquitto_binary,
    running_bridge,
    topic,
    wait_for,
)

T0 = 1_764_000_000
CLIENT = "citybase-bridge-restart-test"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    need_mosquitto_binary()
    b = OwnBroker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def publish(port: int, first: int, n: int) -> None:
    """n readings (ts T0+first ...) spread over 3 devices, each acknowledged by the broker."""
    pub = Publisher(port)
    try:
        for k in range(first, first + n):
            pub.send(topic(k % 3), {"ts": T0 + k, "pm25": float(k)})
    finally:
        pub.close()


def stored_ts(cb: CityBase) -> list[int]:
    cb.flush()
    return [
        r["k"] for r in cb.sql(f"SELECT epoch(ts)::BIGINT - {T0} AS k FROM lake.air ORDER BY ts").to_pylist()
    ]


def test_broker_restart_and_bridge_absence_lose_nothing(own_broker: OwnBroker, tmp_path: Path) -> None:
    with make_platform(tmp_path / "base") as cb:
        with running_bridge(cb, own_broker.url, CLIENT) as bridge:
            publish(own_broker.port, 0, 100)
            wait_for(lambda: count(cb) == 100, what="the first 100 rows")
            first_connects = bridge.stats.connects
        # The bridge is away: the broker queues for its persistent session ...
        publish(own_broker.port, 100, 150)
        # ... and is restarted while it holds them (SIGTERM: it saves them to its persistence file).
        own_broker.stop()
        own_broker.start()
        with running_bridge(cb, own_broker.url, CLIENT) as bridge:
            wait_for(lambda: count(cb) == 250, what="the 150 queued rows after the broker's restart")
            # The broker restarts under a running bridge: it reconnects by itself.
            own_broker.stop()
            wait_for(lambda: not bridge.stats.connected, what="the bridge to notice")
            own_broker.start()
            wait_for(lambda: bridge.stats.connected, timeout=40, what="the bridge to reconnect")
            publish(own_broker.port, 250, 50)
            wait_for(lambda: count(cb) == 300, what="rows published after the reconnect")
            assert bridge.stats.connects == 2 and first_connects == 1
        assert stored_ts(cb) == list(range(300))


def test_unacknowledged_batch_is_redelivered_and_stored_once(
    own_broker: OwnBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rows are durable but before the PUBACKs: the broker redelivers, the key
    (device, ts) stores each reading once."""
    with make_platform(tmp_path / "base") as cb:
        with running_bridge(cb, own_broker.url, CLIENT) as bridge:
            monkeypatch.setattr(bridge._client, "ack_many", lambda mids: 0)  # the "crash" before acking
            publish(own_broker.port, 0, 60)
            wait_for(lambda: bridge.stats.stored == 60, what="60 rows durable, none acknowledged")
        monkeypatch.undo()
        assert count(cb) == 60
        with running_bridge(cb, own_broker.url, CLIENT) as again:
            wait_for(lambda: again.stats.received == 60, what="the broker to redeliver all 60")
            wait_for(lambda: again.stats.acked == 60, what="the redeliveries to be acknowledged")
        assert stored_ts(cb) == list(range(60))


def test_a_batch_that_cannot_be_stored_is_not_acknowledged(
    own_broker: OwnBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage fails (disk full, say): nothing is acknowledged, the batch is retried, and what a
    stopped bridge did not store comes again to the next one."""
    with make_platform(tmp_path / "base") as cb:
        real = cb.ingest
        calls: list[int] = []

        def failing(*a: Any, **kw: Any) -> Any:
            calls.append(1)
            raise OSError("disk full")

        with running_bridge(cb, own_broker.url, CLIENT) as bridge:
            monkeypatch.setattr(cb, "ingest", failing)
            publish(own_broker.port, 0, 40)
            wait_for(lambda: len(calls) >= 2, what="the failing batch to be retried")
            assert bridge.stats.acked == 0 and bridge.stats.last_error == "OSError: disk full"
        monkeypatch.setattr(cb, "ingest", real)
        assert count(cb) == 0
        with running_bridge(cb, own_broker.url, CLIENT):
            wait_for(lambda: count(cb) == 40, what="all 40 after the restart of the bridge")
        assert stored_ts(cb) == list(range(40))


def test_bridge_that_starts_before_the_broker_connects_when_it_comes(tmp_path: Path) -> None:
    need_mosquitto_binary()
    broker = OwnBroker(tmp_path / "late")
    with make_platform(tmp_path / "base") as cb:
        bridge = MqttBridge(cb, broker.url, client_id=CLIENT, batch_ms=10)
        bridge.start()
        try:
            assert not bridge.wait_connected(timeout=0.5)
            broker.start()
            assert bridge.wait_connected(timeout=40), bridge.stats.last_error
            publish(broker.port, 0, 5)
            wait_for(lambda: count(cb) == 5, what="5 rows")
        finally:
            bridge.stop()
            broker.stop()
