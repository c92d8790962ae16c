"""Console benchmark: time to the first map view, and map layer request latency while panning and
replaying, in headless Chromium (Debian's, through Playwright) against a real server.

    python benchmarks/console_bench.py                      # 10M points (the issue's target)
    python benchmarks/console_bench.py --points 1000000     # a quick run

The city: ~300 district polygons and N GPS points from the sample city's generator (the same
`iter_gps_points` benchmarks/st_bench.py uses), loaded as a points dataset (`events`: heat map and
vector tiles) and, for the moving vehicles, the first `--vehicles` of them as a tracks dataset.

First map view: from navigation (key already in the tab) until the map is idle with every layer
drawn (`window.citybase.mapReady`), cold (first page after the server starts: navigation begins as
soon as uvicorn accepts connections, while the map's index is still being built) and warm (median).
`--index fresh` (the default) removes the index kept on disk first, so the cold view includes
reading the lake; `--index disk` keeps it (a restart: the index is mapped from disk).
Layer requests: every /api/v1/map/* request the page makes while it pans (jumps to zoom 12-15 over
the city, waiting for the map each time) and replays (moves the time slider), timed in the server
(request in to response out); p50/p99 per kind.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from citybase import CityBase
from citybase.console.testing import browser_missing, console_app, launch_chromium
from citybase.testing import serving

sys.path.insert(0, str(Path(__file__).parent))
from st_bench import bench_city, make_data

FIELDS = [
    {"name": "object_id", "type": "int"},
    {"name": "ts", "type": "timestamp"},
    {"name": "lon", "type": "float"},
    {"name": "lat", "type": "float"},
    {"name": "speed", "type": "float", "unit": "m/s"},
]
COMMON = {"department": "transport", "system": "fleet-gps", "time_field": "ts", "fields": FIELDS}
EVENTS = {**COMMON, "name": "events", "kind": "points", "geometry": {"lon": "lon", "lat": "lat"}}
VEHICLES = {
    **COMMON,
    "name": "vehicles",
    "kind": "tracks",
    "object_field": "object_id",
    "geometry": {"lon": "lon", "lat": "lat"},
}


def build(d: Path, points: int, vehicles: int, seed: int) -> CityBase:
    t = time.perf_counter()
    parquet, g = make_data(d, points, 300, seed)
    cb = bench_city(d, g, None)
    cb.declare(EVENTS)
    cb.declare(VEHICLES)
    r = cb.load("events", parquet)
    assert r.added == points, r
    head = d / "vehicles.parquet"
    pq.write_table(pq.read_table(parquet).slice(0, vehicles), head)
    cb.load("vehicles", head)
    print(
        f"city: {points:,} points, {len(g)} districts, built in {time.perf_counter() - t:.1f} s", flush=True
    )
    return cb


#: (ms, start, path) of every map request, for the slowest ones.
SLOWEST: list[tuple[float, float, str]] = []


def timing_middleware(store: dict[str, list[float]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def mw(request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        t = time.perf_counter()
        res = await call_next(request)
        path = request.url.path
        if path.startswith("/api/v1/map/"):
            kind = path.split("/")[4]
            ms = (time.perf_counter() - t) * 1000
            store[kind].append(ms)
            SLOWEST.append((ms, t, path))
        return res

    return mw


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--vehicles", type=int, default=1_000_000, help="rows of the tracks dataset")
    ap.add_argument("--views", type=int, default=5, help="page loads for the first-view timing")
    ap.add_argument("--pans", type=int, default=30)
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the city in this folder")
    ap.add_argument(
        "--index",
        choices=["fresh", "disk"],
        default="fresh",
        help="fresh: remove the map index kept on disk before the server starts; disk: keep it",
    )
    args = ap.parse_args()
    logging.basicConfig(format="  [%(relativeCreated)6.0f ms] %(message)s")
    logging.getLogger("citybase.console").setLevel(logging.INFO)
    why = browser_missing()
    if why:
        sys.exit(f"cannot run: {why}")
    d = args.keep or Path(tempfile.mkdtemp(prefix="citybase-console-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    if (d / "cb").exists():
        cb = CityBase.open(d / "cb", threads=2)
        print(f"city: reusing {d / 'cb'}", flush=True)
    else:
        cb = build(d, args.points, min(args.vehicles, args.points), args.seed)
    reg = cb.registry
    if "city" not in {x.id for x in reg.departments()}:
        reg.add_department("city")
    key = reg.issue_key("city", role="admin").key
    kept = Path(cb.root) / "console" / "map-index"
    if args.index == "fresh" and kept.exists():
        shutil.rmtree(kept)
    print(f"map index on disk at start: {kept.exists() and any(kept.iterdir())}", flush=True)
    app = console_app(cb)
    times: dict[str, list[float]] = defaultdict(list)
    app.middleware("http")(timing_middleware(times))
    from playwright.sync_api import sync_playwright

    with serving(app) as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        first: list[float] = []
        page = None
        for i in range(args.views):
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            ctx.add_init_script(f"sessionStorage.setItem('citybase.key', {key!r})")
            page = ctx.new_page()
            t = time.perf_counter()
            page.goto(f"{url}/console/")
            page.wait_for_function("window.citybase && window.citybase.mapReady === true", timeout=120_000)
            first.append(time.perf_counter() - t)
            marks = page.evaluate("({config: window.citybase.configAt, ...window.citybase.marks})")
            steps = ", ".join(f"{k} {v / 1000:.2f}" for k, v in marks.items())
            print(f"first map view {i + 1}: {first[-1]:.2f} s (page clock, s: {steps})", flush=True)
            if i == 0:
                status = page.evaluate(
                    "async () => (await fetch('/api/v1/map/index', {headers: {Authorization:"
                    " `Bearer ${sessionStorage.getItem('citybase.key')}`}})).json()"
                )
                print(f"  map index after the cold view: {status}", flush=True)
            if i < args.views - 1:
                ctx.close()
        assert page is not None
        times.clear()  # what follows is panning and replaying
        SLOWEST.clear()
        t_pans = time.perf_counter()
        bounds = page.evaluate("window.citybase.config.bounds")
        rng = random.Random(args.seed)
        for _ in range(args.pans):
            lon = rng.uniform(bounds[0], bounds[2])
            lat = rng.uniform(bounds[1], bounds[3])
            z = rng.choice([12, 13, 14, 15])
            page.evaluate(f"window.citybaseMap.jumpTo({{center: [{lon}, {lat}], zoom: {z}}})")
            page.wait_for_function("window.citybaseMap.loaded()", timeout=60_000)
        page.evaluate("window.citybaseMap.jumpTo({zoom: 12})")
        for i in range(args.replays):
            before = page.evaluate("window.citybase.refreshes")
            page.evaluate(
                "(v) => { const s = document.getElementById('time-slider'); s.value = v;"
                " s.dispatchEvent(new Event('input', {bubbles: true})); }",
                int(1000 * (i + 1) / args.replays),
            )
            page.wait_for_function("(b) => window.citybase.refreshes > b", arg=before, timeout=60_000)
            page.wait_for_function("window.citybaseMap.loaded()", timeout=60_000)
        browser.close()
    cb.close()
    print()
    print(f"first map view: cold {first[0]:.2f} s, warm median {statistics.median(first[1:] or first):.2f} s")
    print(f"{'layer requests':<16}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
    every: list[float] = []
    for kind, xs in sorted(times.items()):
        every += xs
        print(f"{kind:<16}{len(xs):>6}{pct(xs, 0.5):>10.1f}{pct(xs, 0.99):>10.1f}")
    if every:
        print(f"{'all':<16}{len(every):>6}{pct(every, 0.5):>10.1f}{pct(every, 0.99):>10.1f}")
    slow = sorted(SLOWEST)[-4:]
    print("slowest:", ", ".join(f"{ms:.0f} ms at +{t - t_pans:.1f} s {p}" for ms, t, p in slow))


if __name__ == "__main__":
    main()
