"""MQTT telemetry: publish -> queryable throughput and latency, against a plain paho subscriber.

    .venv/bin/python benchmarks/mqtt_bench.py --messages 300000 --devices 1000

It starts its own Mosquitto on a free port (no queue limits, so nothing is dropped), a platform in
a temporary folder, the bridge, and a flusher thread that moves the append log into the lake every
`--flush-interval` seconds as the server does. Three phases, each bounded in count and time:

1. live: a publisher process sends `--messages` QoS 1 telemetry messages as fast as the broker
   acknowledges them (at most `--window` unacknowledged), each carrying its publish time as `ts`.
   A poller reads the lake every 20 ms; a row's latency is the time it was first seen queryable
   minus its `ts`. Rate = messages / (last row queryable - first publish).
2. raw drain: the same number of messages queued for a plain paho subscriber (persistent session,
   auto-ack, `json.loads` per message) that then drains them: the ceiling of one Python client.
3. bridge drain: the same backlog queued for the bridge while it is away, then drained to durable
   (acknowledged) and to queryable. The ratio to (2) is what the bridge's own work costs.

Everything runs on this machine over loopback: publisher, broker, bridge and DuckDB share its cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from paho.mqtt.client import Client, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from citybase.iot import Device, DeviceRegistry, PayloadField, telemetry_dataset, telemetry_topic
from citybase.iot.bridge import MqttBridge
from citybase.iot.mosquitto import Mosquitto
from citybase.platform import CityBase


def publisher(port: int, topics: list[str], n: int, window: int, first: int, done: Any) -> None:
    """Publish n QoS 1 messages round-robin over topics, at most `window` unacknowledged."""
    acked = [0]
    cv = threading.Condition()
    every = max(1, min(256, window // 4))

    def on_publish(*_a: Any) -> None:
        with cv:
            acked[0] += 1
            if acked[0] % every == 0 or acked[0] == n:
                cv.notify()

    c = Client(CallbackAPIVersion.VERSION2, protocol=MQTTv311)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.time()
    nt = len(topics)
    times = np.empty(n)
    for k in range(n):
        if k - acked[0] >= window:
            with cv:
                cv.wait_for(lambda: k - acked[0] < window, timeout=30)  # noqa: B023
        now = time.time()
        times[k] = now
        c.publish(topics[k % nt], f'{{"ts":{now:.6f},"v":{first + k}}}', qos=1)
    with cv:
        cv.wait_for(lambda: acked[0] >= n, timeout=120)
    done.put((t0, time.time(), acked[0], times))
    c.disconnect()
    c.loop_stop()


def run_publisher(
    port: int, topics: list[str], n: int, window: int, first: int
) -> tuple[float, float, int, np.ndarray[Any, Any]]:
    q: Any = mp.Queue()
    p = mp.Process(target=publisher, args=(port, topics, n, window, first, q))
    p.start()
    out: tuple[float, float, int, np.ndarray[Any, Any]] = q.get(timeout=600)
    p.join()
    return out


#: The lake's SQLite catalog refuses a commit while a read is open ("database is locked"), and a
#: read while a commit is under way: the poller and the flusher take turns.
LAKE_LOCK = threading.Lock()


class Flusher(threading.Thread):
    def __init__(self, cb: CityBase, interval: float):
        super().__init__(daemon=True)
        self.cb, self.interval, self.stop = cb, interval, threading.Event()
        self.errors: list[str] = []
        self.durations: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                with LAKE_LOCK:
                    t0 = time.perf_counter()
                    if self.cb.flush():
                        self.durations.append(time.perf_counter() - t0)
            except Exception as e:  # as the server's flusher: the rows stay in the log; next tick
                self.errors.append(str(e)[:120])


class Poller(threading.Thread):
    """Samples (time, rows queryable) every 20 ms with a cheap `count(*)`.

    One publisher connection, a broker that keeps its order and a bridge that keeps it too: the
    rows queryable at a sample are the first `count` messages published, so the latency of message
    k is the time of the first sample that counts it minus its publish time.
    """

    def __init__(self, cb: CityBase, table: str):
        super().__init__(daemon=True)
        self.cb, self.table, self.stop = cb, table, threading.Event()
        self.samples: list[tuple[float, int]] = []
        self.count = 0
        self.errors = 0
        self.last_seen = 0.0

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                with LAKE_LOCK:
                    n = int(self.cb.sql(f"SELECT count(*) AS n FROM {self.table}").column("n")[0].as_py())
            except Exception:  # "database is locked" while a flush commits: poll again
                self.errors += 1
                continue
            if n > self.count:
                now = time.time()
                self.samples.append((now, n))
                self.count, self.last_seen = n, now

    def latencies(self, published: np.ndarray[Any, Any], base: int = 0) -> np.ndarray[Any, Any]:
        out = np.full(len(published), np.nan)
        prev = 0
        for t, n in self.samples:
            k = min(n - base, len(published))
            if k > prev:
                out[prev:k] = t - published[prev:k]
                prev = k
        done: np.ndarray[Any, Any] = out[~np.isnan(out)]
        return done


def pct(a: np.ndarray[Any, Any], q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def raw_drain(port: int, topics: list[str], n: int, window: int) -> float:
    """msg/s at which a plain paho subscriber drains a backlog of n messages."""
    got = [0]
    finished = threading.Event()

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        json.loads(m.payload)
        got[0] += 1
        if got[0] >= n:
            finished.set()

    def client() -> Client:
        c = Client(CallbackAPIVersion.VERSION2, client_id="raw-bench", clean_session=False, protocol=MQTTv311)
        c.on_message = on_message
        c.connect("127.0.0.1", port)
        return c

    c = client()
    c.subscribe("rawbench/#", qos=1)
    c.loop_start()
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()
    run_publisher(port, [t.replace("citybase/", "rawbench/", 1) for t in topics], n, window, 0)
    c = client()
    t0 = time.perf_counter()
    c.loop_start()
    finished.wait(timeout=300)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return got[0] / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--window", type=int, default=2000, help="publisher's unacknowledged messages at most")
    ap.add_argument("--batch-ms", type=float, default=20.0)
    ap.add_argument("--flush-interval", type=float, default=0.25)
    ap.add_argument("--skip-drain", action="store_true")
    args = ap.parse_args()
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    port = broker.port
    results: dict[str, Any] = {
        "messages": n,
        "devices": args.devices,
        "cores": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 1),
    }
    try:
        cb = CityBase(tmp / "base")
        cb.registry.add_department("eco")
        cb.declare(telemetry_dataset("bench", "eco", "aq", {"value": "float"}, partition="none"))
        reg = DeviceRegistry(cb.meta)
        rng = np.random.default_rng(1)
        for i in range(args.devices):
            lon, lat = 116.3 + rng.random() * 0.2, 39.8 + rng.random() * 0.2
            reg.add(
                Device(
                    id=f"d{i}",
                    type="bench",
                    department="eco",
                    dataset="bench",
                    lon=lon,
                    lat=lat,
                    payload={"v": PayloadField(field="value")},
                )
            )
        topics = [telemetry_topic("eco", f"d{i}") for i in range(args.devices)]
        url = f"mqtt://127.0.0.1:{port}"
        bridge = MqttBridge(cb, url, client_id="bench-bridge", batch_ms=args.batch_ms)
        flusher, poller = Flusher(cb, args.flush_interval), Poller(cb, "lake.bench")
        bridge.start()
        assert bridge.wait_connected(), bridge.stats.last_error
        flusher.start()
        poller.start()

        # 1. live
        t0, t1, acked, published = run_publisher(port, topics, n, args.window, 0)
        end = time.time() + 120
        while poller.count < n and time.time() < end:
            time.sleep(0.02)
        lats = poller.latencies(published)
        results["live"] = {
            "published_per_s": round(acked / (t1 - t0)),
            "queryable": poller.count,
            "publish_to_queryable_per_s": round(poller.count / (poller.last_seen - t0)),
            "latency_p50_s": round(pct(lats, 50), 3),
            "latency_p99_s": round(pct(lats, 99), 3),
            "latency_max_s": round(float(lats.max()) if len(lats) else float("nan"), 3),
            "bridge_batches": bridge.stats.batches,
            "bridge_seconds": {k: round(v, 2) for k, v in bridge.stats.seconds.items()},
            "flushes": len(flusher.durations),
            "flush_s_mean": round(float(np.mean(flusher.durations)), 3) if flusher.durations else None,
            "flush_s_max": round(max(flusher.durations), 3) if flusher.durations else None,
            "flush_errors": len(flusher.errors),
            "flush_error_sample": flusher.errors[:2],
            "poll_errors": poller.errors,
            "flush_interval_s": args.flush_interval,
            "batch_ms": args.batch_ms,
        }
        with LAKE_LOCK:
            distinct = cb.sql("SELECT count(DISTINCT value) AS n FROM lake.bench").column("n")[0].as_py()
        results["live"]["distinct_values_stored"] = distinct
        print(json.dumps({"live": results["live"]}), flush=True)
        if not args.skip_drain:
            # 3. bridge drain: a backlog queued while the bridge is away
            bridge.stop()
            before = poller.count
            run_publisher(port, topics, n, args.window, n)
            again = MqttBridge(cb, url, client_id="bench-bridge", batch_ms=args.batch_ms)
            d0 = time.time()
            again.start()
            end = time.time() + 300
            while again.stats.acked < n and time.time() < end:
                time.sleep(0.01)
            d_durable = time.time() - d0
            while poller.count < before + n and time.time() < end:
                time.sleep(0.01)
            d_query = time.time() - d0
            again.stop()
            # 2. raw drain, after the bridge is idle
            flusher.stop.set()
            poller.stop.set()
            raw = raw_drain(port, topics, n, args.window)
            results["drain"] = {
                "raw_paho_per_s": round(raw),
                "bridge_durable_per_s": round(again.stats.acked / d_durable),
                "bridge_queryable_per_s": round((poller.count - before) / d_query),
                "ratio_durable_to_raw": round(again.stats.acked / d_durable / raw, 3),
            }
            print(json.dumps({"drain": results["drain"]}), flush=True)
        else:
            bridge.stop()
        flusher.stop.set()
        poller.stop.set()
        cb.close()
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_1m_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
