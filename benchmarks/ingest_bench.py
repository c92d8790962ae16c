"""HTTP batch ingest: rows/s acknowledged (durable) by `citybase serve`, and until queryable.

    python benchmarks/ingest_bench.py --rows 2000000 --batch 20000 --clients 2

A server process (uvicorn, one worker, the flusher on a 1 s timer) and a load generator share this
machine's cores. Each client posts batches of sensor rows over loopback; a 201 means the rows are
fsynced. Printed per body format: acknowledged rows/s, p50/p99 request latency, the time until the
last row is queryable in the lake, and, as the peer, the same batches through the Python API
(`CityBase.ingest`) in one process: the ratio is the cost of HTTP.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from citybase import CityBase
from citybase.testing import free_port

SPEC = {
    "name": "air",
    "department": "eco",
    "system": "aq",
    "kind": "series",
    "fields": [
        {"name": "station", "required": True},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "pm25", "type": "float", "min": 0},
        {"name": "no2", "type": "float", "min": 0},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
    ],
    "time_field": "ts",
    "object_field": "station",
    "geometry": {"lon": "lon", "lat": "lat"},
    "partition": "month",
}

SERVER = """
import sys, uvicorn
from citybase import CityBase
from citybase.api import Settings, create_app
from citybase.api.observe import configure_logging
configure_logging("warning")
cb = CityBase.open(sys.argv[1], threads=1)
uvicorn.run(create_app(cb, Settings(root=sys.argv[1], flush_interval=1.0, log_level="warning")),
            host="127.0.0.1", port=int(sys.argv[2]), log_config=None, access_log=False)
"""


def batch(i: int, n: int) -> pa.Table:
    rng = np.random.default_rng(i)
    base = np.datetime64("2026-03-01T00:00:00") + np.int64(i) * np.timedelta64(n, "s")
    return pa.table(
        {
            "station": pa.array([f"s{k % 500}" for k in range(n)]),
            "ts": pa.array(base + np.arange(n).astype("timedelta64[s]")),
            "pm25": rng.uniform(0, 300, n),
            "no2": rng.uniform(0, 100, n),
            "lon": rng.uniform(116.0, 116.8, n),
            "lat": rng.uniform(39.6, 40.2, n),
        }
    )


def encode(t: pa.Table, fmt: str) -> tuple[bytes, str]:
    if fmt == "arrow":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        return bytes(sink.getvalue()), "application/vnd.apache.arrow.stream"
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(t, buf)
        return buf.getvalue(), "text/csv"
    rows = t.to_pylist()
    for r in rows:
        r["ts"] = r["ts"].isoformat()
    if fmt == "json":
        return json.dumps(rows).encode(), "application/json"
    return "\n".join(json.dumps(r) for r in rows).encode(), "application/x-ndjson"


def run_http(d: Path, fmt: str, bodies: list[tuple[bytes, str]], rows: int, clients: int) -> dict[str, float]:
    root = d / f"http-{fmt}"
    with CityBase.open(root) as cb:
        cb.registry.add_department("eco")
        key = cb.registry.issue_key("eco").key
        cb.declare(SPEC)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"}
        lat: list[float] = []

        def post(i: int, client: httpx.Client) -> None:
            body, ctype = bodies[i]
            t = time.perf_counter()
            r = client.post(
                f"{url}/api/v1/datasets/air/rows", content=body, headers={**headers, "Content-Type": ctype}
            )
            lat.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text

        def worker(k: int) -> None:
            with httpx.Client(timeout=120) as client:
                for i in range(k, len(bodies), clients):
                    post(i, client)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as ex:
            list(ex.map(worker, range(clients)))
        acked = time.perf_counter() - t0
        # Queryable: a reader asks the server (one process holds an embedded platform, ADR 0007)
        # for the lake's row count until the last row is there.
        queryable = None
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            r = httpx.get(f"{url}/api/v1/stats", headers=headers, timeout=60)
            if r.status_code == 200 and r.json()["total_records"] >= rows:
                queryable = time.perf_counter() - t0
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait()
    lat.sort()
    return {
        "rows/s": rows / acked,
        "p50 ms": lat[len(lat) // 2] * 1000,
        "p99 ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "queryable s": queryable if queryable is not None else float("nan"),
        "acked s": acked,
    }


def run_python(d: Path, tables: list[pa.Table], rows: int) -> dict[str, float]:
    with CityBase.open(d / "python", threads=1) as cb:
        cb.declare(SPEC)
        t0 = time.perf_counter()
        for t in tables:
            cb.ingest("air", t)
        acked = time.perf_counter() - t0
        cb.flush()
        total = time.perf_counter() - t0
    return {
        "rows/s": rows / acked,
        "p50 ms": float("nan"),
        "p99 ms": float("nan"),
        "queryable s": total,
        "acked s": acked,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--formats", default="arrow,csv,ndjson,json")
    args = ap.parse_args()
    n_batches = args.rows // args.batch
    rows = n_batches * args.batch
    tables = [batch(i, args.batch) for i in range(n_batches)]
    d = Path(tempfile.mkdtemp(prefix="citybase-ingest-"))
    results: dict[str, dict[str, float]] = {}
    try:
        results["python api"] = run_python(d, tables, rows)
        for fmt in args.formats.split(","):
            bodies = [encode(t, fmt) for t in tables]
            results[f"http {fmt}"] = run_http(d, fmt, bodies, rows, args.clients)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    peer = results["python api"]["rows/s"]
    print(f"\n{rows:,} rows in batches of {args.batch:,}, {args.clients} clients")
    print(f"{'path':<14}{'rows/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'all queryable s':>17}{'vs python api':>15}")
    for name, r in results.items():
        print(
            f"{name:<14}{r['rows/s']:>12,.0f}{r['p50 ms']:>9.1f}{r['p99 ms']:>9.1f}{r['queryable s']:>17.1f}"
            f"{r['rows/s'] / peer:>14.2f}x"
        )


if __name__ == "__main__":
    main()
