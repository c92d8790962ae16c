"""MQTT telemetry: publish -> queryable throughput and latency, against plain subscribers.

    .venv/bin/python benchmarks/mqtt_bench.py --messages 300000 --rate 30000

It starts its own Mosquitto on a free port (no queue limits, so nothing is dropped), a platform in
a temporary folder with `--devices` registered devices, the bridge, and a flusher thread that moves
the append log into the lake every `--flush-interval` seconds as the server does.

The load generator is Mosquitto's own C client: `--publishers` `mosquitto_pub -l -q 1 -M <window>`
processes, each publishing the lines it reads on stdin as QoS 1 messages on one device's topic (so
`--publishers` of the devices send). A small generator process feeds them at a paced `--rate`:
message k is due at t0 + k/rate, goes to publisher k mod P, and carries that due time as its `ts`;
it is written to the pipe no earlier. Latency is measured against this schedule, so a generator,
a publisher or a broker that falls behind shows up as latency, never hides it. (mosquitto_pub 2.0's
`-l` stops at the first PUBACK whose packet id equals its last one's, so a publisher fed much faster
than it sends loses messages once its ids wrap at 65,535; pacing keeps it far from that, and every
phase checks its count.)

Phases, each bounded in count and time:

1. live: `--messages` at `--rate`. A row is queryable from the first time a reader polling the
   lake's current snapshot (every 10 ms) sees the snapshot that inserted it (DuckLake's
   `ducklake_table_insertions` names it) or a later one; latency = that time minus the row's
   `ts`. Rate = messages / (last row queryable - first due time).
2. bridge drain: the same number queued for the bridge while it is away, then drained to durable
   (acknowledged) and to queryable.
3. raw drains of the same backlog by plain subscribers with persistent sessions: paho (auto-ack,
   `json.loads` per message: the ceiling of one Python client) and mosquitto_sub (C: the broker's
   and loopback's ceiling). The ratios of (2) to them are what the bridge's own work costs.

CPU seconds per message are reported per component (broker, generator and mosquitto_pub, the
bridge's network and worker threads, the flusher's own thread, not DuckDB's pool) from /proc
and thread CPU clocks. Everything runs on this machine over loopback and shares its cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from paho.mqtt.client import Client, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from citybase.deployment import Deployment
from citybase.iot import Device, DeviceRegistry, PayloadField, telemetry_dataset, telemetry_topic
from citybase.iot.bridge import MqttBridge
from citybase.iot.mosquitto import Mosquitto
from citybase.platform import CityBase

_HZ = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / _HZ


def thread_cpu(t: threading.Thread | None) -> float:
    if t is None or t.ident is None or not t.is_alive():
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    except OSError:
        return 0.0


def generator(port: int, topics: list[str], n: int, rate: float, window: int, first: int, done: Any) -> None:
    """Feed n messages to len(topics) mosquitto_pub processes at `rate`, each with its due time."""
    procs = [
        subprocess.Popen(
            ["mosquitto_pub", "-p", str(port), "-q", "1", "-M", str(window), "-l", "-t", t],
            stdin=subprocess.PIPE,
        )
        for t in topics
    ]
    pipes = [p.stdin for p in procs]
    assert all(pipes)
    time.sleep(0.5)  # let them connect
    c0 = time.process_time()
    t0 = time.time() + 0.05
    nt = len(topics)
    sent, lag = 0, 0.0
    while sent < n:
        now = time.time()
        due = min(n, int((now - t0) * rate) + 1)
        if due <= sent:
            time.sleep(min(0.002, (t0 + sent / rate) - now + 1e-4))
            continue
        lag = max(lag, now - (t0 + sent / rate))
        bufs: list[list[str]] = [[] for _ in range(nt)]
        for k in range(sent, due):
            bufs[k % nt].append(f'{{"ts":{t0 + k / rate:.6f},"v":{first + k}}}\n')
        for pipe, lines in zip(pipes, bufs, strict=True):
            if lines:
                pipe.write("".join(lines).encode())  # type: ignore[union-attr]
                pipe.flush()  # type: ignore[union-attr]
        sent = due
    fed = time.time()
    gen_cpu = time.process_time() - c0
    for pipe in pipes:
        pipe.close()  # type: ignore[union-attr]
    rcs = [p.wait(timeout=600) for p in procs]
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.put(
        {
            "t0": t0,
            "fed": fed,
            "acked": time.time(),
            "max_lag_s": lag,
            "generator_cpu_s": gen_cpu,
            "mosquitto_pub_cpu_s": ch.ru_utime + ch.ru_stime,
            "publisher_exit_codes": sorted(set(rcs)),
        }
    )


def run_generator(
    port: int, topics: list[str], n: int, rate: float, window: int, first: int
) -> dict[str, Any]:
    q: Any = mp.Queue()
    p = mp.Process(target=generator, args=(port, topics, n, rate, window, first, q))
    p.start()
    out: dict[str, Any] = q.get(timeout=900)
    p.join()
    assert out["publisher_exit_codes"] == [0], out
    return out


class Flusher(threading.Thread):
    """The server's flusher: the append log into the lake every `interval` seconds. It notes when
    each lake snapshot was committed (the time flush() returned: rows are queryable from then)."""

    def __init__(self, cb: CityBase, interval: float):
        super().__init__(daemon=True)
        self.cb, self.interval, self.stop = cb, interval, threading.Event()
        self.errors: list[str] = []
        self.durations: list[float] = []
        self.starts: list[float] = []  # when each flush that applied something started
        self.committed: list[tuple[int, float]] = []  # (lake snapshot after a flush, when)
        self.rounds: list[tuple[float, float]] = []  # (start, end) of every flush, empty ones too

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.flush_once()

    def flush_once(self) -> int:
        start = time.time()
        try:
            t0 = time.perf_counter()
            applied = self.cb.flush()
            if applied:
                self.committed.append((self.cb.lake.snapshot(), time.time()))
                self.durations.append(time.perf_counter() - t0)
                self.starts.append(start)
            return applied
        except Exception as e:  # as the server's flusher: the rows stay in the log; next tick
            self.errors.append(str(e)[:120])
            return 0
        finally:
            self.rounds.append((start, time.time()))

    def wait_round_after(self, t: float, timeout: float = 120) -> None:
        """Until a flush that started after `t` has finished (all durable by `t` is queryable)."""
        end = time.time() + timeout
        while time.time() < end and not any(s > t for s, _ in self.rounds[-3:]):
            time.sleep(0.01)


class SnapshotPoller(threading.Thread):
    """Reads the lake's current snapshot id every 10 ms, as a reader would: a row is queryable
    from the first time its snapshot (or a later one) is seen. One flush may commit several
    snapshots (the compaction commits as it goes), each visible before the flush returns."""

    def __init__(self, cb: CityBase):
        super().__init__(daemon=True)
        self.cb, self.stop = cb, threading.Event()
        self.seen: list[tuple[int, float]] = []
        self.errors = 0

    def run(self) -> None:
        last = -1
        while not self.stop.wait(0.01):
            try:
                s = self.cb.lake.snapshot()
            except Exception:  # the catalog busy with a commit: look again
                self.errors += 1
                continue
            if s > last:
                self.seen.append((s, time.time()))
                last = s


def queryable_at(snapshots: np.ndarray[Any, Any], *marks: list[tuple[int, float]]) -> np.ndarray[Any, Any]:
    """When each snapshot was first known queryable: the earliest of the (snapshot, time) marks
    (the poller's sightings, the flusher's returns) that reached it."""
    best = np.full(len(snapshots), np.inf)
    for mark in marks:
        if not mark:
            continue
        snaps = np.array([s for s, _ in mark])
        times = np.minimum.accumulate(np.array([t for _, t in mark])[::-1])[::-1]
        i = np.searchsorted(snaps, snapshots, side="left")
        ok = i < len(times)
        best[ok] = np.minimum(best[ok], times[i[ok]])
    best[np.isinf(best)] = np.nan
    return best


def stored(cb: CityBase, table: str, lo: int, hi: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(v, lake snapshot that inserted it) of the rows with lo <= v < hi."""
    last = cb.lake.snapshot()
    t = cb.sql(
        "SELECT value AS v, snapshot_id AS s"
        f" FROM ducklake_table_insertions('lake', 'main', '{table}', 0, {last})"
        " WHERE value >= ? AND value < ?",
        [lo, hi],
    )
    return t.column("v").to_numpy(), t.column("s").to_numpy()


def pct(a: np.ndarray[Any, Any], q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def raw_paho_drain(port: int, topics: list[str], n: int, rate: float, window: int) -> float:
    """msg/s at which a plain paho subscriber (auto-ack, json.loads) drains a backlog of n."""
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
    run_generator(port, [t.replace("citybase/", "rawbench/", 1) for t in topics], n, rate, window, 0)
    c = client()
    t0 = time.perf_counter()
    c.loop_start()
    finished.wait(timeout=300)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    assert got[0] == n, f"paho drained {got[0]} of {n}"
    return got[0] / dt


def raw_c_drain(port: int, topics: list[str], n: int, rate: float, window: int) -> float:
    """msg/s at which mosquitto_sub (C, QoS 1, persistent session) drains a backlog of n."""
    base = ["mosquitto_sub", "-p", str(port), "-q", "1", "-c", "-i", "raw-c-bench", "-t", "rawc/#"]
    subprocess.run([*base, "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    run_generator(port, [t.replace("citybase/", "rawc/", 1) for t in topics], n, rate, window, 0)
    t0 = time.perf_counter()
    r = subprocess.run([*base, "-C", str(n), "-W", "300"], capture_output=True, check=False)
    dt = time.perf_counter() - t0
    got = r.stdout.count(b"\n")
    assert got == n, f"mosquitto_sub drained {got} of {n}"
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--rate", type=float, default=30_000, help="messages/s the generator offers")
    ap.add_argument("--publishers", type=int, default=8, help="mosquitto_pub processes (devices sending)")
    ap.add_argument("--devices", type=int, default=1000, help="devices registered")
    ap.add_argument("--window", type=int, default=1000, help="per publisher: unacked at most")
    ap.add_argument("--batch-ms", type=float, default=20.0)
    ap.add_argument("--flush-interval", type=float, default=0.25)
    ap.add_argument(
        "--catalog",
        help="the lake's catalog, e.g. 'postgres:dbname=bench host=127.0.0.1 user=postgres' (an empty "
        "database) for the cluster deployment's, or 'sqlite:<file>'; default the embedded DuckDB file",
    )
    ap.add_argument("--skip-drain", action="store_true")
    args = ap.parse_args()
    n = args.messages
    pubs = min(args.publishers, args.devices)
    tmp = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    assert broker.proc is not None
    port = broker.port
    results: dict[str, Any] = {
        "messages": n,
        "rate_offered": args.rate,
        "publishers": pubs,
        "devices": args.devices,
        "cores": os.cpu_count(),
        "loadavg_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    try:
        if args.catalog:
            Deployment(catalog=args.catalog, data_path=str(tmp / "lake")).write(tmp / "base")
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
        topics = [telemetry_topic("eco", f"d{i}") for i in range(pubs)]
        url = f"mqtt://127.0.0.1:{port}"
        bridge = MqttBridge(cb, url, client_id="bench-bridge", batch_ms=args.batch_ms)
        flusher = Flusher(cb, args.flush_interval)
        poller = SnapshotPoller(cb)
        bridge.start()
        assert bridge.wait_connected(), bridge.stats.last_error
        flusher.start()
        poller.start()

        # 1. live
        cpu0 = {
            "broker": proc_cpu(broker.proc.pid),
            "bridge_network": thread_cpu(bridge._client._thread),
            "bridge_worker": thread_cpu(bridge._worker),
            "flusher": thread_cpu(flusher),
        }
        gen = run_generator(port, topics, n, args.rate, args.window, 0)
        end = time.time() + 120
        while bridge.stats.stored < n and time.time() < end:
            time.sleep(0.01)
        cpu = {
            "broker": proc_cpu(broker.proc.pid),
            "bridge_network": thread_cpu(bridge._client._thread),
            "bridge_worker": thread_cpu(bridge._worker),
        }
        flusher.wait_round_after(time.time())
        cpu["flusher"] = thread_cpu(flusher)
        v, snap = stored(cb, "bench", 0, n)
        q_at = queryable_at(snap, poller.seen, flusher.committed)
        due = gen["t0"] + v / args.rate
        lats = q_at - due
        lats = lats[~np.isnan(lats)]
        last = float(np.nanmax(q_at)) if len(q_at) else float("nan")
        per_msg = {k: round((cpu[k] - cpu0[k]) / n * 1e6, 1) for k in cpu}
        per_msg["generator"] = round(gen["generator_cpu_s"] / n * 1e6, 1)
        per_msg["mosquitto_pub"] = round(gen["mosquitto_pub_cpu_s"] / n * 1e6, 1)
        results["live"] = {
            "published_per_s": round(n / (gen["acked"] - gen["t0"])),
            "generator_max_lag_s": round(gen["max_lag_s"], 3),
            "rows_stored": len(v),
            "distinct_values_stored": len(np.unique(v)),
            "publish_to_queryable_per_s": round(len(v) / (last - gen["t0"])),
            "latency_p50_s": round(pct(lats, 50), 3),
            "latency_p99_s": round(pct(lats, 99), 3),
            "latency_max_s": round(float(lats.max()) if len(lats) else float("nan"), 3),
            "cpu_us_per_message": per_msg,
            "cpu_us_per_message_total": round(sum(per_msg.values()), 1),
            "bridge_batches": bridge.stats.batches,
            "bridge_seconds": {k: round(x, 2) for k, x in bridge.stats.seconds.items()},
            "flushes": len(flusher.durations),
            "flush_s_mean": round(float(np.mean(flusher.durations)), 3) if flusher.durations else None,
            "flush_s_max": round(max(flusher.durations), 3) if flusher.durations else None,
            # (seconds from the first due time, duration) of the three slowest flushes
            "flush_slowest": [
                (round(s - gen["t0"], 2), round(d, 3))
                for d, s in sorted(zip(flusher.durations, flusher.starts, strict=True), reverse=True)[:3]
            ],
            "flush_errors": len(flusher.errors),
            "flush_error_sample": flusher.errors[:2],
            "flush_interval_s": args.flush_interval,
            "snapshot_poll_errors": poller.errors,
            "batch_ms": args.batch_ms,
            "loadavg_after": [round(x, 1) for x in os.getloadavg()],
        }
        print(json.dumps({"live": results["live"]}), flush=True)
        bridge.stop()
        if not args.skip_drain:
            # 2. bridge drain: a backlog queued while the bridge is away
            run_generator(port, topics, n, args.rate, args.window, n)
            again = MqttBridge(cb, url, client_id="bench-bridge", batch_ms=args.batch_ms)
            b0 = proc_cpu(broker.proc.pid)
            d0 = time.time()
            again.start()
            end = time.time() + 300
            while again.stats.acked < n and time.time() < end:
                time.sleep(0.005)
            d_durable = time.time() - d0
            b_cpu = proc_cpu(broker.proc.pid) - b0
            flusher.wait_round_after(time.time())
            v2, snap2 = stored(cb, "bench", n, 2 * n)
            d_query = float(np.nanmax(queryable_at(snap2, poller.seen, flusher.committed))) - d0
            again.stop()
            flusher.stop.set()
            poller.stop.set()
            # 3. raw drains of the same backlog, after the bridge is idle
            raw = raw_paho_drain(port, topics, n, args.rate, args.window)
            raw_c = raw_c_drain(port, topics, n, args.rate, args.window)
            durable = again.stats.acked / d_durable
            results["drain"] = {
                "raw_paho_per_s": round(raw),
                "raw_mosquitto_sub_per_s": round(raw_c),
                "bridge_durable_per_s": round(durable),
                "bridge_queryable_per_s": round(len(v2) / d_query),
                "bridge_rows_stored": len(v2),
                "broker_cpu_us_per_message_bridge_drain": round(b_cpu / n * 1e6, 1),
                "ratio_durable_to_raw_paho": round(durable / raw, 3),
                "ratio_durable_to_raw_mosquitto_sub": round(durable / raw_c, 3),
            }
            print(json.dumps({"drain": results["drain"]}), flush=True)
        flusher.stop.set()
        poller.stop.set()
        cb.close()
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
