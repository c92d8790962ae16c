"""The MQTT bridge: devices' telemetry from a broker into the platform, durable before acknowledged.

The bridge subscribes at QoS 1 to `<root>/+/+/telemetry` (see `citybase.iot.decode` for the topic
scheme and payloads) with a fixed client id and a persistent session (clean_session false), so
the broker keeps queueing while the bridge is away: restarted, cut off, or redeploying.

Messages are collected for `batch_ms`, decoded (`Decoder.decode_many`: Arrow parses a batch's
JSON in one call), and made durable as one Arrow batch per dataset through `cb.ingest` (one fsync
each); rejected messages go to quarantine in the same way. Only then are their PUBACKs sent, all of
a batch's in one write (paho's manual acks, through `citybase.iot.client.BatchingClient`, which
also reads the socket in large chunks: see docs/iot.md, Performance). A message the bridge
received but had not made durable when it lost the connection (or crashed) is therefore still
held by the broker and delivered again; the dataset's key (device, ts) stores the redelivery
once. Acks are never sent on a later connection than the one a message came on: the broker
redelivers those instead.

A broker restart or a network cut is survived by paho's reconnect loop with backoff (1 to 30 s).
Mosquitto's defaults drop messages to a slow subscriber (`max_queued_messages 1000`) and let only
20 be unacknowledged at once (`max_inflight_messages 20`, which also bounds the bridge's batches):
see docs/iot.md for the settings that lose nothing and go fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from uuid import uuid4

import pyarrow as pa
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citybase.errors import InputError
from citybase.iot.client import BatchingClient
from citybase.iot.decode import MQTT_QUARANTINE, Decoder, Reject, Rows, subscription
from citybase.iot.devices import DeviceRegistry
from citybase.iot.rules import ALARMS, RuleBook, RuleEngine, alarms_dataset, alarms_table
from citybase.iot.state import latest_readings
from citybase.log.append_log import QUARANTINE
from citybase.model.layout import QUARANTINE_COLUMNS

if TYPE_CHECKING:
    from citybase.api.observe import Metrics
    from citybase.platform import CityBase

log = logging.getLogger("citybase.iot")

SOURCE = "mqtt"
_RAW_LIMIT = 64 * 1024


@dataclass(frozen=True)
class BrokerUrl:
    """`mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, default port 8883)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """
        >>> BrokerUrl.parse("mqtts://bridge:s3cret@broker.city:8884").redacted
        'mqtts://bridge:***@broker.city:8884'
        """
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname:
            raise InputError(f"MQTT URL must be mqtt://host[:port] or mqtts://...; got scheme {u.scheme!r}")
        tls = u.scheme in ("mqtts", "ssl")
        return cls(
            host=u.hostname,
            port=u.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
        )

    @property
    def redacted(self) -> str:
        """The URL for logs: never the password."""
        who = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{who}{self.host}:{self.port}"


@dataclass
class BridgeStats:
    """What the bridge has done since it started (also exported as metrics when given)."""

    received: int = 0
    stored: int = 0
    quarantined: int = 0
    alarms: int = 0
    acked: int = 0
    batches: int = 0
    connects: int = 0
    connected: bool = False
    last_error: str | None = None
    #: Seconds spent per step (decode, ingest, rules, ack): where a batch's time goes.
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("decode", "ingest", "rules", "ack"), 0.0)
    )


# (topic, payload, mid, qos, connection generation, received at in Unix microseconds)
_Msg = tuple[str | bytes, bytes | bytearray, int, int, int, int]


class MqttBridge:
    """Subscribes to device telemetry and feeds it into `cb`; `start()` / `stop()` (a server Service)."""

    def __init__(
        self,
        cb: CityBase,
        url: str,
        *,
        metrics: Metrics | None = None,
        client_id: str = "citybase-bridge",
        root: str = "citybase",
        batch_ms: float = 20.0,
        max_batch: int = 50_000,
        refresh_s: float = 5.0,
        keepalive: int = 30,
        on_rows: Callable[[dict[str, pa.Table]], None] | None = None,
    ):
        self.cb, self.metrics, self.on_rows = cb, metrics, on_rows
        self.broker = BrokerUrl.parse(url)
        self.client_id, self.root = client_id, root
        self.batch_s, self.max_batch, self.refresh_s, self.keepalive = (
            batch_ms / 1000,
            max_batch,
            refresh_s,
            keepalive,
        )
        self.stats = BridgeStats()
        self.rules = RuleEngine()
        self._buf: list[_Msg] = []
        self._lock = threading.Lock()
        self._has_data = threading.Event()
        self._stop = threading.Event()
        self._gen = 0
        self._decoder: Decoder | None = None
        self._refreshed = 0.0
        self._worker = threading.Thread(target=self._run, name="citybase-mqtt-bridge", daemon=True)
        self._client = self._make_client()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a broker that is down now is retried) and start batching."""
        self.refresh()
        if self.rules.rules:
            try:
                self.rules.seed(latest_readings(self.cb, DeviceRegistry(self.cb.meta).list()))
            except Exception:  # start anyway: at worst an alarm already raised is raised again
                log.exception("could not read the devices' latest state to seed the rules")
        log.info(
            "mqtt bridge connecting",
            extra={"fields": {"broker": self.broker.redacted, "client": self.client_id}},
        )
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self.keepalive)
        self._client.loop_start()
        self._worker.start()

    def stop(self) -> None:
        """Store and acknowledge what has arrived, then disconnect (the session stays on the broker)."""
        self._stop.set()
        self._has_data.set()
        if self._worker.is_alive():
            self._worker.join(timeout=60)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once connected and subscribed (for tests and the CLI)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.stats.connected:
                return True
            time.sleep(0.01)
        return False

    def refresh(self) -> None:
        """Reread devices, rules and declarations (done every `refresh_s` and on an unknown device)."""
        city = self.cb.city
        devices = DeviceRegistry(self.cb.meta).list()
        self._decoder = Decoder(
            devices, self.cb.datasets, tz=city.timezone if city is not None else "UTC", root=self.root
        )
        self.rules.set_rules(RuleBook(self.cb.meta).list())
        self._refreshed = time.monotonic()

    # -- paho callbacks (network thread): as little work as possible --------------------------

    def _make_client(self) -> BatchingClient:
        c = BatchingClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=MQTTv311,
            manual_ack=True,
        )
        if self.broker.username:
            c.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            c.tls_set()
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message  # QoS 2 or MQTT 5 only: the rest comes through the sink
        c.sink = self._on_publish
        return c

    def _on_connect(
        self, client: Client, _u: Any, flags: ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            self.stats.last_error = f"connect refused: {rc}"
            log.warning(
                "mqtt connect refused", extra={"fields": {"broker": self.broker.redacted, "reason": str(rc)}}
            )
            return
        with self._lock:
            self._gen += 1
        client.subscribe(subscription(self.root), qos=1)
        self.stats.connects += 1
        log.info(
            "mqtt bridge connected",
            extra={"fields": {"broker": self.broker.redacted, "session_present": flags.session_present}},
        )

    def _on_subscribe(
        self, _c: Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(c.is_failure for c in codes):
            self.stats.last_error = f"subscription refused: {codes}"
            log.error("mqtt subscription refused", extra={"fields": {"codes": [str(c) for c in codes]}})
            return
        self.stats.connected = True

    def _on_disconnect(
        self, _c: Client, _u: Any, _f: DisconnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.stats.connected = False
        if not self._stop.is_set():
            self.stats.last_error = f"disconnected: {rc}"
            log.warning("mqtt bridge disconnected; reconnecting", extra={"fields": {"reason": str(rc)}})

    def _on_publish(self, topic: bytes, payload: bytes | bytearray, mid: int, qos: int) -> None:
        now = time.time_ns() // 1000
        with self._lock:
            self._buf.append((topic, payload, mid, qos, self._gen, now))
            n = len(self._buf)
        if n == 1 or n >= self.max_batch:
            self._has_data.set()

    def _on_message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        self._on_publish(msg._topic, msg.payload, msg.mid, msg.qos)  # the raw topic: bytes

    # -- the worker: batch, store, then acknowledge -------------------------------------------

    def _run(self) -> None:
        while True:
            self._has_data.wait()
            stopping = self._stop.is_set()
            if not stopping:
                self._gather()
            with self._lock:
                batch, self._buf = self._buf, []
                self._has_data.clear()
            if batch:
                self._store_until_done(batch)
            if stopping:
                return

    def _gather(self) -> None:
        """Let a batch grow for up to `batch_ms` (one fsync for many messages), but stop as soon as
        it stops growing: a broker that allows few unacknowledged messages (Mosquitto's default
        is 20) sends no more until these are acked, and a quiet device should not wait."""
        deadline = time.monotonic() + self.batch_s
        last = -1
        while time.monotonic() < deadline:
            time.sleep(min(0.002, self.batch_s))
            n = len(self._buf)
            if n == last or n >= self.max_batch:
                return
            last = n

    def _store_until_done(self, batch: list[_Msg]) -> None:
        delay = 0.1
        while True:
            try:
                self._store(batch)
                return
            except Exception as e:  # the batch stays unacknowledged: retried, or redelivered
                self.stats.last_error = f"{e.__class__.__name__}: {e}"
                log.exception("mqtt batch not stored; retrying", extra={"fields": {"messages": len(batch)}})
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 10.0)

    def _store(self, batch: list[_Msg]) -> None:
        if time.monotonic() - self._refreshed > self.refresh_s:
            self.refresh()
        t0 = time.perf_counter()
        out, rejects = self._decode(batch)
        if any(r.field == "(device)" for r in rejects) and time.monotonic() - self._refreshed > 1.0:
            self.refresh()  # a device registered a moment ago: look again before quarantining
            out, rejects = self._decode(batch)
        t1 = time.perf_counter()
        tables: dict[str, pa.Table] = {}
        counts: dict[str, list[int]] = {}
        for name, rows in out.items():
            if not len(rows):
                continue
            t = rows.to_arrow()
            res = self.cb.ingest(name, t, source=SOURCE)
            tables[name] = t
            counts[name] = [res.accepted, len(res.rejected)]
        if rejects:
            self._quarantine(rejects)
            for r in rejects:
                counts.setdefault(r.dataset, [0, 0])[1] += 1
        t2 = time.perf_counter()
        alarms, changed = self.rules.evaluate(out)
        if alarms:
            if ALARMS not in self.cb.datasets:
                self.cb.declare(alarms_dataset())
            self.cb.ingest(ALARMS, alarms_table(alarms), source=f"{SOURCE}:rules")
        self.rules.commit(changed)
        t3 = time.perf_counter()
        # Durable: now, and only now, the broker may forget these messages (one write for all).
        gen = self._gen
        mids = [mid for _t, _p, mid, qos, g, _r in batch if qos == 1 and g == gen]
        self._client.ack_many(mids)
        acked = len(mids)
        for _t, _p, mid, qos, g, _r in batch:
            if qos == 2 and g == gen:  # (only if a broker grants more than the QoS 1 asked for)
                self._client.ack(mid, qos)
                acked += 1
        sec = self.stats.seconds
        sec["decode"] += t1 - t0
        sec["ingest"] += t2 - t1
        sec["rules"] += t3 - t2
        sec["ack"] += time.perf_counter() - t3
        self._account(len(batch), counts, len(alarms), acked)
        if self.on_rows is not None and tables:
            self.on_rows(tables)

    def _decode(self, batch: list[_Msg]) -> tuple[dict[str, Rows], list[Reject]]:
        assert self._decoder is not None
        out: dict[str, Rows] = {}
        rejects: list[Reject] = []
        self._decoder.decode_many([(m[0], m[1], m[5]) for m in batch], out, rejects)
        return out, rejects

    def _quarantine(self, rejects: list[Reject]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        batch = f"{MQTT_QUARANTINE}-{uuid4().hex[:16]}"
        cols = {
            "dataset": [r.dataset for r in rejects],
            "batch": [batch] * len(rejects),
            "source": [f"{SOURCE}:{r.topic}" for r in rejects],
            "line": [None] * len(rejects),
            "field": [r.field for r in rejects],
            "value": [r.value for r in rejects],
            "reason": [r.reason for r in rejects],
            "raw": [r.raw[:_RAW_LIMIT].decode("utf-8", errors="replace") for r in rejects],
            "quarantined_at": [now] * len(rejects),
        }
        t = pa.table({n: pa.array(cols[n], typ) for n, typ, _ in QUARANTINE_COLUMNS})
        self.cb.log.append(MQTT_QUARANTINE, t, batch=batch, kind=QUARANTINE)

    def _account(self, received: int, counts: dict[str, list[int]], alarms: int, acked: int) -> None:
        s = self.stats
        s.received += received
        s.batches += 1
        s.alarms += alarms
        s.acked += acked
        for name, (ok, bad) in counts.items():
            s.stored += ok
            s.quarantined += bad
            if self.metrics is not None:
                self.metrics.ingested.labels(name, SOURCE).inc(ok)
                self.metrics.quarantined.labels(name, SOURCE).inc(bad)
