"""Sharing benchmark: what enforcing a grant costs on the core queries, and what metering costs.

    python benchmarks/share_bench.py --points 3000000 --reps 51

N GPS points from the sample city's generator, each carrying a driver's name and phone (personal
fields), over ~300 districts, 2 DuckDB threads. Each of B1 (st_bench.py's box: ~3% of these
points), B2 (bbox + one day), B3 (one vehicle's track over a day), B4 (10 nearest) and B5 (per
district per hour over a day) runs

- open: the engine with no scope (every stored column: what the provider reads),
- asked: the columns a consumer asked for, nothing else (projection only),
- filter: the same columns and the grant's row filter, no masks (to tell the two costs apart),
- grant: the same columns through a realistic grant scope — projection, a row filter naming the
  districts of the grant (all of them here, so that every row is tested and the answer does not
  shrink: the overhead is the filter's and the masks' cost alone), and the name and phone masked,
  read from their shadow columns (masked once, when the rows were written: docs/adr/0005),
- onfly: the same grant with the masks computed in the query instead (what a table made before
  shadow columns costs, and what every grant cost before them),
- narrow: the grant narrowed to one district (a smaller answer, for reference),
- read: the grant through `Sharing.read` (grant lookup in the metadata database, scope building,
  metering) — the whole price a consumer pays,

round-robin, and prints p50 latencies, and per variant the ratio to open of the p50 wall time and
of the p50 CPU time of the process (DuckDB's threads included). On a machine others share, CPU time
is the steadier measure of the work a query does; wall time swings with the load (printed).
Then it times the masking done at write time, and metering: `Usage.record` per use and a flush of
a 10,000-use batch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citybase.gateway.conform import shadows
from citybase.query.scope import ReadScope
from citybase.registry import Principal, Role
from citybase.share import Decision, RowFilter, Sharing
from citybase.share.scope import grant_scope
from citybase.share.usage import Usage

sys.path.insert(0, str(Path(__file__).parent))
from st_bench import bench_city, make_data

THREADS = 2
SPEC: dict[str, Any] = {
    "name": "gps",
    "department": "transport",
    "system": "fleet-gps",
    "kind": "tracks",
    "time_field": "ts",
    "object_field": "object_id",
    "partition": "day",
    "geometry": {"lon": "lon", "lat": "lat"},
    "sharing": "conditional",
    "fields": [
        {"name": "object_id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
        {"name": "speed", "type": "float", "unit": "m/s"},
        {"name": "driver", "type": "string", "personal": "name"},
        {"name": "phone", "type": "string", "personal": "phone"},
    ],
}
ASKED = ["object_id", "ts", "lon", "lat", "speed", "driver", "phone"]
SURNAMES = np.array(list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"), dtype=object)


def interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, tuple[float, float, Any]]:
    """p50 wall time and p50 CPU time (this process, all threads) in ms of each function, run
    round-robin (after one warm-up each) so that a load change on a shared machine weighs on every
    variant alike; and each one's last result."""
    out = {k: fn() for k, fn in fns.items()}
    ts: dict[str, list[float]] = {k: [] for k in fns}
    cs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            c, t = time.process_time(), time.perf_counter()
            out[k] = fn()
            ts[k].append((time.perf_counter() - t) * 1000)
            cs[k].append((time.process_time() - c) * 1000)
    return {k: (statistics.median(ts[k]), statistics.median(cs[k]), out[k]) for k in fns}


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def with_personal_fields(t: pa.Table) -> pa.Table:
    """A driver's name and phone per vehicle: the personal fields a grant masks."""
    oid = t.column("object_id").to_numpy()
    driver = SURNAMES[oid % len(SURNAMES)] + "某"
    phone = np.char.add("138", np.char.zfill((oid % 100_000_000).astype(str), 8)).astype(object)
    return t.append_column("driver", pa.array(driver, pa.string())).append_column(
        "phone", pa.array(phone, pa.string())
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=3_000_000)
    ap.add_argument("--districts", type=int, default=300)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="citybase-share-bench-"))
    try:
        t = time.perf_counter()
        parquet, g = make_data(
            d, args.points, args.districts, args.seed, chunk_rows=2_000_000, extend=with_personal_fields
        )
        print(f"data: {args.points:,} points, {len(g)} districts, made in {time.perf_counter() - t:.1f} s")
        cb = bench_city(d, g, None)
        codes = [str(c) for c in g["code"]]
        cb.declare(SPEC)
        t = time.perf_counter()
        r = cb.load("gps", parquet)
        assert r.added == args.points, r
        load_s = time.perf_counter() - t
        print(f"loaded in {load_s:.1f} s")
        for dept in ("transport", "police"):
            cb.registry.add_department(dept)
        share = Sharing(cb, usage_interval=3600)
        provider = Principal("transport", Role.MEMBER, "bench")
        police = Principal("police", Role.MEMBER, "bench")

        q = cb.query
        first = next(pq.ParquetFile(parquet).iter_batches(batch_size=1, columns=["ts", "object_id"]))
        t0 = first.column(0)[0].as_py().replace(minute=0, second=0, microsecond=0)
        first_obj = first.column(1)[0].as_py()
        b = g.total_bounds
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        w = (b[2] - b[0]) * 0.0275
        box = (cx - w, cy - w * 0.8, cx + w, cy + w * 0.8)
        day = (t0 + timedelta(days=10), t0 + timedelta(days=11))
        # The narrowed grant: the district of most points in the box (a smaller, non-empty answer).
        in_box = q.bbox("gps", box).group_by("district").aggregate([("district", "count")])
        one = str(in_box.sort_by([("district_count", "descending")]).column("district")[0].as_py())

        spec = cb.datasets["gps"]
        asked = ReadScope(fields=grant_scope(spec, ASKED).fields)
        # A grant on every district, from the first day on: every row is tested, none is dropped.
        every = RowFilter(places={"district": [str(c) for c in codes]}, start=t0 - timedelta(days=30))
        grant = grant_scope(spec, ASKED, [every])
        narrow = grant_scope(spec, ASKED, [RowFilter(places={"district": [one]})])
        req = share.request(police, "gps", purpose="benchmark", fields=ASKED, row_filter=every)
        share.decide(provider, req.id, Decision(action="approve"))
        assert share.scope_for(police, "gps") == grant
        assert set(grant.shadows) == set(grant.masked)
        assert set(grant.shadows.values()) <= cb.lake.columns("gps")
        print(
            f"grant scope: {len(grant.fields or [])} columns, masks on {sorted(grant.masked)} "
            f"(read from {sorted(grant.shadows.values())}), "
            f"filter on {len(codes)} districts and a time window"
        )
        t = time.perf_counter()
        for _ in range(200):
            share.scope_for(police, "gps")
        print(
            f"scope_for (grant read fresh from the metadata database): {(time.perf_counter() - t) * 5:.2f} ms"
        )

        b5 = {"level": "district", "start": day[0], "end": day[1], "every": "1h"}
        obj = int(first_obj)
        queries: dict[str, tuple[Callable[..., Any], dict[str, Any], str]] = {
            "B1 bbox": (q.bbox, {"bbox": box}, "bbox"),
            "B2 bbox+day": (q.range, {"area": box, "start": day[0], "end": day[1]}, "range"),
            "B3 track, 1 day": (q.track, {"object_id": obj, "start": day[0], "end": day[1]}, "track"),
            "B4 knn k=10": (q.nearest, {"lon": cx, "lat": cy, "k": 10}, "nearest"),
            "B5 district x hour, 1 day": (q.counts_by_place, b5, "counts"),
        }
        filtered = replace(grant, masked={}, shadows={})  # the grant less its masks
        onfly = replace(grant, shadows={})  # the grant, masks computed at read time
        cols = ["open", "asked", "filter", "grant", "onfly", "narrow", "read"]
        ratios = ["filter", "grant", "onfly", "read"]
        print(
            f"\n{args.reps} interleaved runs after a warm-up; load average {_load()} before\n"
            "latency p50 in ms; then <variant>/open as p50 wall (p50 CPU)\n"
            f"{'query':<27}"
            + "".join(f"{c:>8}" for c in cols)
            + "".join(f"{r + '/open':>15}" for r in ratios)
            + "  rows open / grant / narrow"
        )
        for name, (fn, kw, read_name) in queries.items():
            variants: dict[str, Callable[[], Any]] = {
                "open": partial(fn, "gps", **kw),
                "asked": partial(fn, "gps", **kw, scope=asked),
                "filter": partial(fn, "gps", **kw, scope=filtered),
                "grant": partial(fn, "gps", **kw, scope=grant),
                "onfly": partial(fn, "gps", **kw, scope=onfly),
                "narrow": partial(fn, "gps", **kw, scope=narrow),
                "read": partial(share.read, police, "gps", read_name, **kw),
            }
            res = interleaved(variants, args.reps)
            med = {k: v[0] for k, v in res.items()}
            cpu = {k: v[1] for k, v in res.items()}
            rows = {k: v[2].num_rows for k, v in res.items()}
            assert rows["grant"] == rows["open"] == rows["read"] == rows["onfly"], rows
            for c in ("driver", "phone"):
                if c in res["grant"][2].column_names:
                    assert res["grant"][2].column(c).equals(res["onfly"][2].column(c)), c
            print(
                f"{name:<27}"
                + "".join(f"{med[c]:>8.1f}" for c in cols)
                + "".join(f"{med[r] / med['open']:>8.2f} ({cpu[r] / cpu['open']:.2f})" for r in ratios)
                + f"  {rows['open']:,} / {rows['grant']:,} / {rows['narrow']:,}"
            )
        print(f"load average {_load()} after")

        # -- masking at write time -----------------------------------------------------------
        sample = pq.read_table(parquet, columns=["driver", "phone"])
        t = time.perf_counter()
        shadows(spec, {c: sample.column(c) for c in sample.column_names})
        took = time.perf_counter() - t
        print(
            f"\nmasking at write time (shadow columns): {took:.2f} s for {sample.num_rows:,} rows x 2 fields "
            f"({took / sample.num_rows / 2 * 1e9:.0f} ns a value; the load took {load_s:.1f} s)"
        )

        # -- metering ------------------------------------------------------------------------
        u = Usage(cb.meta, share.clock, batch=10_000, interval=3600)
        n = 200_000
        t = time.perf_counter()
        for i in range(n):
            u.record(f"dept{i % 40}", f"ds{i % 300}", "bbox", i % 100, "bench")
        u.flush()
        per = (time.perf_counter() - t) / n
        print(
            f"\nmetering: {per * 1e6:.2f} µs per use, batches of 10,000 included "
            f"({1 / per:,.0f} uses/s; 93 million uses a year are ~3 a second)"
        )
        share.close()
        cb.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
