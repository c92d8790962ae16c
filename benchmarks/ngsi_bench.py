"""NGSI-LD throughput: entity attribute updates/s and entity GETs/s over loopback, with p99 latency.

    .venv/bin/python benchmarks/ngsi_bench.py --entities 1000 --seconds 10 --connections 32

Starts `create_app` under uvicorn (httptools, uvloop) in its own process on a free loopback port,
with the NGSI-LD API open on loopback and a fresh platform root; seeds entities with a batch
create; then drives it with wrk (Debian package `wrk`; Lua scripts pick random entity ids) for a
bounded time: GET /entities/{id}, then PATCH /entities/{id}/attrs (one Property). Every PATCH also
appends a history row to the lake (via the append log), as in production. Prints one line per run.
Targets (Orion-LD on 1 CPU: ~1,800 updates/s and 4,200 GETs/s): >= 2,000 updates/s, >= 4,000 GETs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from citybase.testing import free_port

SERVER = textwrap.dedent("""
    import sys, uvicorn
    from citybase.api import Settings, create_app
    from citybase.platform import CityBase
    root, port = sys.argv[1], int(sys.argv[2])
    cb = CityBase.open(root, threads=1)
    app = create_app(cb, Settings(root=root, host="127.0.0.1", port=port, ngsi_ld_open_on_loopback=True))
    if sys.argv[4] == "no-history":  # to measure what the lake history costs
        app.state.ngsi.broker.listeners.remove(app.state.ngsi.history.record)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http="httptools", loop="uvloop",
                access_log=False)
""")

GET_LUA = """
math.randomseed(os.time())
request = function()
  local i = math.random(0, {n} - 1)
  return wrk.format("GET", "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:" .. i)
end
"""

PATCH_LUA = """
math.randomseed(os.time() + 1)
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local i = math.random(0, {n} - 1)
  local body = '{{"no2":{{"type":"Property","value":' .. math.random(1, 200) .. ',"unitCode":"GQ"}}}}'
  local path = "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:" .. i .. "/attrs"
  return wrk.format("PATCH", path, nil, body)
end
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), to normalise for a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(base: str, n: int) -> None:
    """AirQualityObserved entities (FIWARE Smart Data Models, dataModel.Environment)."""
    for start in range(0, n, 500):
        batch = []
        for i in range(start, min(n, start + 500)):
            batch.append(
                {
                    "id": f"urn:ngsi-ld:AirQualityObserved:{i}",
                    "type": "AirQualityObserved",
                    "dateObserved": {"type": "Property", "value": "2026-01-01T00:00:00Z"},
                    "no2": {"type": "Property", "value": 40 + i % 30, "unitCode": "GQ"},
                    "pm25": {"type": "Property", "value": 10 + i % 20, "unitCode": "GQ"},
                    "location": {
                        "type": "GeoProperty",
                        "value": {
                            "type": "Point",
                            "coordinates": [116.3 + (i % 100) / 1000, 39.9 + (i // 100) / 1000],
                        },
                    },
                }
            )
        req = urllib.request.Request(
            f"{base}/ngsi-ld/v1/entityOperations/upsert",
            data=json.dumps(batch).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status in (201, 204), resp.status


def wrk(url: str, script: str, seconds: int, connections: int, threads: int) -> tuple[float, str, int]:
    """(requests/s, p99 latency as wrk prints it, non-2xx count)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p99, int(m.group(1)) if m else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--no-history", action="store_true", help="updates skip the lake history")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="ngsi-bench-"))
    port = free_port()
    mode = "no-history" if args.no_history else "history"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port), "1", mode])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        seed(base, args.entities)
        for name, script in (("GET /entities/{id}", GET_LUA), ("PATCH /entities/{id}/attrs", PATCH_LUA)):
            cpu0 = cpu_seconds(server.pid)
            rps, p99, bad = wrk(
                base, script.format(n=args.entities), args.seconds, args.connections, args.threads
            )
            cpu = cpu_seconds(server.pid) - cpu0
            per_cpu = rps * args.seconds / cpu if cpu > 0 else float("nan")
            load = os.getloadavg()[0]
            print(
                f"{name}: {rps:,.0f} req/s, p99 {p99}, non-2xx {bad}; server CPU {cpu:.1f}s "
                f"= {per_cpu:,.0f} req per server CPU-second; load avg {load:.1f} "
                f"({args.connections} connections, {args.seconds}s, {args.entities} entities)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
