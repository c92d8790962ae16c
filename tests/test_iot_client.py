"""The bridge's paho client (batched reads, raw PUBLISH sink, batched PUBACKs) against a real Mosquitto."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from citybase.iot.client import BatchingClient
from citybase.iot.mosquitto import Mosquitto
from test_iot_support import Publisher, need_mosquitto_binary, wait_for


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    need_mosquitto_binary()
    with Mosquitto(tmp_path / "broker") as b:
        yield b


class Receiver:
    """A BatchingClient with a persistent session that records what its sink gets."""

    def __init__(self, port: int, client_id: str, *, ack: bool):
        self.got: list[tuple[bytes, bytes, int, int]] = []
        self.messages: list[MQTTMessage] = []
        self.ack = ack
        self.lock = threading.Lock()
        self.c = BatchingClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTv311,
            manual_ack=True,
        )
        self.c.sink = self.sink
        self.c.on_message = lambda _c, _u, m: self.messages.append(m)
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("t/#", qos=2)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def sink(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        with self.lock:
            self.got.append((topic, payload, mid, qos))

    def ack_all(self) -> None:
        with self.lock:
            self.c.ack_many([mid for _t, _p, mid, qos in self.got if qos == 1])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_every_message_arrives_whole_and_in_order_across_read_buffers(broker: Mosquitto) -> None:
    rx = Receiver(broker.port, "rx-order", ack=True)
    pub = Publisher(broker.port)
    try:
        # small ones many to a read, and two larger than the 256 KiB read buffer among them
        sizes = [10, 0, 300_000, *range(1, 2000, 7), 700_000, 3]
        payloads = [bytes([65 + i % 26]) * s for i, s in enumerate(sizes)]
        for i, p in enumerate(payloads):
            pub.client.publish(f"t/{i % 5}", p, qos=1 if i % 3 else 0)
        pub.send("t/end", b"end")
        wait_for(lambda: len(rx.got) == len(payloads) + 1, what="every message")
        assert [p for _t, p, _m, _q in rx.got[:-1]] == payloads
        assert [t for t, _p, _m, _q in rx.got[:-1]] == [f"t/{i % 5}".encode() for i in range(len(payloads))]
        assert [q for _t, _p, _m, q in rx.got[:-1]] == [1 if i % 3 else 0 for i in range(len(payloads))]
        assert rx.messages == []  # nothing took paho's slow path
    finally:
        pub.close()
        rx.close()


def redelivered(port: int, client_id: str) -> int:
    """How many messages the broker sends again to `client_id`'s session within a second."""
    got: list[Any] = []
    c = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=MQTTv311)
    c.on_message = lambda _c, _u, m: got.append(m)
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(1.0)
    c.disconnect()
    c.loop_stop()
    return len(got)


@pytest.mark.parametrize("ack", [True, False])
def test_ack_many_is_what_lets_the_broker_forget(broker: Mosquitto, ack: bool) -> None:
    rx = Receiver(broker.port, f"rx-ack-{ack}", ack=ack)
    pub = Publisher(broker.port)
    try:
        for i in range(500):
            pub.client.publish("t/x", f"{i}", qos=1)
        pub.send("t/x", b"last")
        wait_for(lambda: len(rx.got) == 501, what="501 messages")
        if ack:
            rx.ack_all()
            time.sleep(0.5)  # the network thread writes the batch
    finally:
        pub.close()
        rx.close()
    # unacknowledged QoS 1 messages stay the session's, and come again; acknowledged ones do not
    assert redelivered(broker.port, f"rx-ack-{ack}") == (0 if ack else 501)


def test_ack_many_writes_pubacks_in_the_order_given(monkeypatch: pytest.MonkeyPatch) -> None:
    c = BatchingClient(CallbackAPIVersion.VERSION2, client_id="unit", manual_ack=True)
    queued: list[tuple[int, bytes]] = []
    monkeypatch.setattr(c, "_packet_queue", lambda cmd, pkt, mid, qos: queued.append((cmd, bytes(pkt))))
    c.ack_many([1, 65535, 256, 2])
    assert queued == [(0x40, b"".join(struct.pack("!BBH", 0x40, 2, m) for m in (1, 65535, 256, 2)))]


def test_qos2_takes_pahos_own_path(broker: Mosquitto) -> None:
    rx = Receiver(broker.port, "rx-qos2", ack=True)
    pub = Publisher(broker.port)
    try:
        pub.send("t/q2", b"exactly once", qos=2)
        wait_for(lambda: len(rx.messages) == 1, what="the QoS 2 message")
        assert rx.messages[0].payload == b"exactly once" and rx.got == []
    finally:
        pub.close()
        rx.close()
