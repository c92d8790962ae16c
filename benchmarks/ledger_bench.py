"""Ledger throughput and proof serving: appended entries/s with a checkpoint at least once a second,
inclusion proof latency, and proof sizes.

    python benchmarks/ledger_bench.py --entries 200000 --threads 8 --batch 100

Proof serving over HTTP is timed with a Python client and, where `wrk` is installed (Debian: `apt
install wrk`), with wrk, whose own cost per request is far smaller.

Appends are acknowledged only once fsynced (SQLite WAL, synchronous=FULL); the integrator publishes a
signed checkpoint every --interval seconds while there are new entries. The peer figure is Tessera's
reported ~2,900 writes/s on a 12-core VM (POSIX storage), printed as a ratio for orientation only:
different hardware, different entry sizes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette
from starlette.routing import Mount

from citybase.ledger import Ledger, leaf_hash, verify_inclusion
from citybase.ledger.http import ledger_routes
from citybase.testing import free_port

TESSERA_WRITES_PER_S = 2_900
console = Console()


class CheckpointWatch:
    """Polls the published checkpoint and records when its size changed."""

    def __init__(self, lg: Ledger) -> None:
        self.lg = lg
        self.events: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        last = -1
        while not self.stop.is_set():
            size = self.lg.checkpoint().size
            if size != last:
                self.events.append((time.perf_counter(), size))
                last = size
            time.sleep(0.005)

    def max_gap(self) -> float:
        ts = [t for t, _ in self.events]
        return max((b - a for a, b in itertools.pairwise(ts)), default=0.0)


def append_phase(lg: Ledger, total: int, threads: int, batch: int) -> tuple[float, float, int, float]:
    """Append `total` entries from `threads` threads in groups of `batch`; returns (seconds until all
    are acknowledged, seconds until a checkpoint covers them, checkpoints published)."""
    start_size = lg.checkpoint().size
    watch = CheckpointWatch(lg)
    per = total // threads

    def worker(t: int) -> None:
        for k in range(0, per, batch):
            n = min(batch, per - k)
            if n == 1:
                lg.append("use", {"dataset": "air_quality", "by": f"dept-{t}", "rows": k, "query": "q" * 40})
            else:
                lg.append_many(
                    [
                        (
                            "use",
                            {"dataset": "air_quality", "by": f"dept-{t}", "rows": k + j, "query": "q" * 40},
                        )
                        for j in range(n)
                    ]
                )

    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    acked = time.perf_counter() - t0
    while lg.checkpoint().size < start_size + per * threads:
        time.sleep(0.005)
    published = time.perf_counter() - t0
    watch.stop.set()
    watch.thread.join()
    gaps = watch.max_gap()
    n_cp = len(watch.events) - 1
    return acked, published, n_cp, gaps


def wrk_rows(port: int, n: int, base: Path) -> list[tuple[str, str, str]]:
    """Proofs and checkpoints over HTTP timed by wrk (a C client, one keep-alive connection), so
    that the figure is the server's round trip and not a Python client's own cost."""
    script = base / "proof.lua"
    script.write_text(
        "math.randomseed(7)\nrequest = function()\n"
        f'  return wrk.format("GET", "/ledger/proof?index=" .. math.random(0, {n - 1}))\nend\n'
    )
    out = []
    for what, extra in (("proof bundle", ["-s", str(script)]), ("checkpoint", [])):
        path = "" if extra else "/ledger/checkpoint"
        r = subprocess.run(
            ["wrk", "-t1", "-c1", "-d5s", "--latency", *extra, f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=True,
        )
        lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", r.stdout, re.M))
        rate = re.search(r"Requests/sec:\s+(\S+)", r.stdout)
        out.append(
            (
                f"{what} over HTTP (uvicorn, wrk: 1 connection), p50 / p99",
                lat.get("50", "?"),
                f"p99 {lat.get('99', '?')}; {rate.group(1) if rate else '?'} requests/s",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=200_000, help="entries for the batched phase")
    ap.add_argument("--single", type=int, default=20_000, help="entries for the one-at-a-time phase")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.5, help="integration / checkpoint interval (s)")
    ap.add_argument("--proofs", type=int, default=2_000)
    ap.add_argument("--dir", type=Path, default=None, help="where to put the ledger (default: a temp dir)")
    a = ap.parse_args()

    base = a.dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        with Ledger.open(base / "ledger", origin="citybase.example/bench", interval=a.interval) as lg:
            acked, pub, n_cp, gap = append_phase(lg, a.entries, a.threads, a.batch)
            rate = a.entries / pub
            rows.append(
                (
                    f"append, {a.threads} threads × batches of {a.batch}",
                    f"{a.entries / acked:,.0f} /s acked",
                    f"{rate:,.0f} /s in checkpoints; {n_cp} checkpoints, max gap {gap:.2f} s; "
                    f"×{rate / TESSERA_WRITES_PER_S:.1f} Tessera",
                )
            )
            acked1, pub1, n_cp1, gap1 = append_phase(lg, a.single, a.threads * 4, 1)
            rate1 = a.single / pub1
            rows.append(
                (
                    f"append, {a.threads * 4} threads × 1 entry (group commit)",
                    f"{a.single / acked1:,.0f} /s acked",
                    f"{rate1:,.0f} /s in checkpoints; {n_cp1} checkpoints, max gap {gap1:.2f} s; "
                    f"×{rate1 / TESSERA_WRITES_PER_S:.1f} Tessera",
                )
            )
            cp = lg.checkpoint()
            n = cp.size
            rng = random.Random(7)
            idx = [rng.randrange(n) for _ in range(a.proofs)]
            # 1. Proof computed from the stored tiles (the work the endpoint does).
            lat, lens = [], []
            for i in idx:
                t = time.perf_counter()
                p = lg.inclusion_proof(i)
                lat.append(time.perf_counter() - t)
                lens.append(len(p))
            for i in idx[:200]:
                verify_inclusion(i, n, leaf_hash(lg.entry(i)), lg.inclusion_proof(i), cp.root)
            rows.append(
                (
                    "inclusion proof from tiles, p50 / p99",
                    f"{statistics.median(lat) * 1e3:.3f} ms",
                    f"p99 {sorted(lat)[int(len(lat) * 0.99)] * 1e3:.3f} ms",
                )
            )
            want = math.ceil(math.log2(n))
            rows.append(
                (
                    "proof size (hashes), max / mean",
                    f"{max(lens)} (ceil(log2 {n:,}) = {want})",
                    f"mean {statistics.mean(lens):.1f}; {'OK' if max(lens) == want else 'MISMATCH'}",
                )
            )
            # 2. The same over real HTTP (uvicorn, keep-alive client): GET /ledger/proof?index=i.
            port = free_port()
            app = Starlette(routes=[Mount("/ledger", routes=ledger_routes(lg))])
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
            th = threading.Thread(target=server.run, daemon=True)
            th.start()
            while not server.started:
                time.sleep(0.01)
            hl = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                for i in idx[:1000]:
                    t = time.perf_counter()
                    r = c.get("/ledger/proof", params={"index": i})
                    hl.append(time.perf_counter() - t)
                    assert r.status_code == 200
                tl = []
                for _ in range(1000):
                    t = time.perf_counter()
                    r = c.get("/ledger/checkpoint")
                    tl.append(time.perf_counter() - t)
            if shutil.which("wrk"):
                rows += wrk_rows(port, n, base)
            server.should_exit = True
            th.join(5)
            rows.append(
                (
                    "proof bundle over HTTP (uvicorn, Python httpx client), p50 / p99",
                    f"{statistics.median(hl) * 1e3:.3f} ms",
                    f"p99 {sorted(hl)[int(len(hl) * 0.99)] * 1e3:.3f} ms",
                )
            )
            rows.append(
                (
                    "checkpoint over HTTP (baseline round trip), p50",
                    f"{statistics.median(tl) * 1e3:.3f} ms",
                    "the HTTP floor on this machine",
                )
            )
    finally:
        if a.dir is None:
            shutil.rmtree(base, ignore_errors=True)

    table = Table(title="citybase ledger benchmark", header_style="bold cyan")
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("notes")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"goals: ≥ 10,000 entries/s with ≥ 1 checkpoint/s; proof p50 < 1 ms; proof = ceil(log2 n) hashes."
        f" Tessera peer: {TESSERA_WRITES_PER_S:,} writes/s (12-core VM)."
    )


if __name__ == "__main__":
    main()
