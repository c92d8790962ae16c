"""Spatio-temporal benchmark: citybase vs DuckDB + spatial over plain Parquet vs GeoPandas.

    python benchmarks/st_bench.py --points 10000000          # the default run
    python benchmarks/st_bench.py --points 100000000 --partition month --partition-cells 7 \
        --no-geopandas --reps 7 --memory-limit 6GB    # the goals' run (BENCHMARKS.md)
    python benchmarks/st_bench.py --csv-only --csv-reps 3    # the CSV load rate alone

Same data for every engine, in the same run, 2 threads each: N GPS points from the sample city's
generator (`citybase.sim`) over ~300 district polygons. Prints p50/p99 latency per query, load
rates, peak RSS and each peer's time divided by citybase's (above 1 = citybase faster).
B1-B5 and B8 check that both engines give the same rows (B4, B8: the same distances); B6's peer
bins on a square grid (DuckDB has no H3 offline), B7's computes the trip statistics without stays.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from citybase import CityBase
from citybase.model.city import Level
from citybase.places.city import City, Layer
from citybase.query.scope import ReadScope
from citybase.store.engine import arrow_table, connect

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
    "fields": [
        {"name": "object_id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
        {"name": "speed", "type": "float", "unit": "m/s"},
    ],
}


EVENTS: dict[str, Any] = {
    "name": "events",
    "department": "city",
    "system": "hotline",
    "kind": "points",
    "time_field": "ts",
    "partition": "day",
    "geometry": {"lon": "lon", "lat": "lat"},
    "fields": [
        {"name": "event_id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
    ],
}


def reset_peak_rss() -> bool:
    """Start the peak-RSS count again from now (Linux: clear_refs 5); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak RSS since the start or the last reset (VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trips_sql(src: str, where: str) -> str:
    """B7's peer: per object, points, time span, length and speeds, with window functions."""
    step = "ST_Distance_Sphere(ST_Point(lag(lat) OVER w, lag(lon) OVER w), ST_Point(lat, lon))"
    return f"""
        WITH s AS (SELECT object_id, ts, {step} AS step_m,
                          (epoch_us(ts) - lag(epoch_us(ts)) OVER w) / 1e6 AS step_s
                   FROM {src} WHERE {where} WINDOW w AS (PARTITION BY object_id ORDER BY ts, lon, lat))
        SELECT object_id, count(*) AS points, min(ts) AS first_time, max(ts) AS last_time,
               coalesce(sum(step_m), 0) AS length_m, max(step_m / nullif(step_s, 0)) AS max_speed_mps
        FROM s GROUP BY object_id"""


def knn_join_sql(events: str, points: str, k: int, minutes: int | None, degrees: float = 0.01) -> str:
    """B8's peer: each event's k nearest objects among their positions within +-minutes. With no
    minutes, DuckDB spatial's join within a fixed radius instead (a user's guess, `degrees` wide:
    a circle with fewer than k objects inside gives fewer rows)."""
    on = (
        f"p.ts BETWEEN e.ts - INTERVAL {minutes} MINUTE AND e.ts + INTERVAL {minutes} MINUTE"
        if minutes is not None
        else f"ST_DWithin(ST_Point(e.lon, e.lat), ST_Point(p.lon, p.lat), {degrees})"
    )
    d = "ST_Distance_Sphere(ST_Point(e.lat, e.lon), ST_Point(p.lat, p.lon))"
    return f"""
        WITH pairs AS (SELECT e.event_id, p.object_id, min({d}) AS d
                       FROM {events} e JOIN {points} p ON {on} GROUP BY ALL)
        SELECT * FROM pairs QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY d) <= {k}"""


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """p50 and p99 in ms over `reps` runs (after one warm-up), and the last result."""
    out = fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    return statistics.median(ts), ts[min(len(ts) - 1, int(len(ts) * 0.99))], out


def make_data(
    d: Path,
    n: int,
    n_districts: int,
    seed: int,
    *,
    chunk_rows: int = 5_000_000,
    extend: Callable[[pa.Table], pa.Table] | None = None,
) -> tuple[Path, Any]:
    """N GPS points (5 columns; `extend` may add more per chunk) in one Parquet file, and the
    districts they fall in."""
    from citybase.sim import iter_gps_points
    from citybase.sim.admin import districts

    g = districts(n_districts, seed=seed)
    path = d / "points.parquet"
    writer: pq.ParquetWriter | None = None
    for chunk in iter_gps_points(n, chunk_rows=chunk_rows, seed=seed):
        t = chunk.select(["object_id", "ts", "lon", "lat", "speed"])
        if extend is not None:
            t = extend(t)
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    assert writer is not None
    writer.close()
    return path, g


def bench_city(d: Path, g: Any, memory_limit: str | None) -> CityBase:
    """A platform under `d` whose city has the benchmark's districts as its one layer."""
    cb = CityBase.open(d / "cb", threads=THREADS, memory_limit=memory_limit)
    codes = np.array([str(c) for c in g["code"]], dtype=object)
    layer = Layer(
        Level.district,
        codes,
        codes.copy(),
        np.array([None] * len(g), dtype=object),
        np.array(g.geometry.values, dtype=object),
    )
    cb.setup_city(City("bench", "UTC", 12, {Level.district: layer}))
    return cb


def build_place_index(cb: CityBase) -> None:
    """Build the city's place index now (it is built on first use), so that a timing after this
    leaves it out."""
    assert cb.city is not None
    cb.city.keys(np.array([116.4]), np.array([39.9]))


def csv_rates(cb: CityBase, d: Path, rows: pa.Table, g: Any, reps: int, memory_limit: str | None) -> None:
    """`rows` written as CSV, then, `reps` times: DuckDB's own CSV-to-Parquet copy of the file and
    citybase's load of it (into a new dataset each time), timed back to back. Then, once, DuckDB
    doing the job a load does, less H3 (no extension offline): each row joined to its district
    (`g`), sorted by day and place, written partitioned by day; for scale, not a goal."""
    csv = d / "points.csv"
    pacsv.write_csv(rows, csv)
    n = rows.num_rows
    con = connect(threads=THREADS, memory_limit=memory_limit)
    best = (0.0, 0.0)
    for i in range(reps):
        t, cpu = time.perf_counter(), time.process_time()
        con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{d}/copy.parquet' (FORMAT parquet)")
        duck_csv, duck_cpu = n / (time.perf_counter() - t), time.process_time() - cpu
        name = "gps_csv" if i == 0 else f"gps_csv_{i}"
        cb.declare({**SPEC, "name": name})
        t, cpu = time.perf_counter(), time.process_time()
        r = cb.load(name, csv)
        cb_csv, cb_cpu = n / (time.perf_counter() - t), time.process_time() - cpu
        assert r.added == n, r
        best = (max(best[0], cb_csv), max(best[1], duck_csv))
        # CPU seconds (all threads) say what the work costs where wall time says what else ran.
        print(
            f"CSV: citybase {cb_csv:,.0f} rows/s vs DuckDB CSV->Parquet copy {duck_csv:,.0f} rows/s "
            f"({cb_csv / duck_csv:.0%}); CPU {cb_cpu:.2f} s vs {duck_cpu:.2f} s; "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    if reps > 1:  # on a shared machine the best of each is the least disturbed
        print(
            f"CSV, best of {reps}: citybase {best[0]:,.0f} rows/s vs DuckDB {best[1]:,.0f} rows/s "
            f"({best[0] / best[1]:.0%})"
        )
    con.register(
        "districts", pa.table({"code": [str(c) for c in g["code"]], "wkb": [x.wkb for x in g.geometry]})
    )
    con.execute("CREATE OR REPLACE TABLE d AS SELECT code, ST_GeomFromWKB(wkb) AS geom FROM districts")
    # Inner join: DuckDB plans its spatial join for inner joins only (a point outside every
    # district is dropped here, where citybase keeps it with a null key).
    t, cpu = time.perf_counter(), time.process_time()
    kept = con.execute(
        "COPY (SELECT p.*, d.code AS district, year(p.ts) AS y, month(p.ts) AS m, day(p.ts) AS dd "
        f"FROM read_csv('{csv}') p JOIN d ON ST_Intersects(d.geom, ST_Point(p.lon, p.lat)) "
        f"ORDER BY date_trunc('day', p.ts), district, p.lon) TO '{d}/keyed' "
        "(FORMAT parquet, PARTITION_BY (y, m, dd), OVERWRITE)"
    ).fetchone()
    keyed, keyed_cpu = n / (time.perf_counter() - t), time.process_time() - cpu
    print(
        f"CSV, DuckDB keying as a load does (district join, sorted, partitioned by day; no H3): "
        f"{keyed:,.0f} rows/s ({kept[0] if kept else 0:,} rows kept), CPU {keyed_cpu:.2f} s; "
        f"citybase's best is {best[0] / keyed:.2f}x that"
    )
    con.close()


def csv_only(d: Path, args: argparse.Namespace) -> None:
    """The CSV comparison alone, on the same first rows of the same points as the whole run."""
    from citybase.sim import iter_gps_points
    from citybase.sim.admin import districts

    g = districts(args.districts, seed=args.seed)
    rows = next(iter_gps_points(args.points, chunk_rows=args.csv_rows, seed=args.seed))
    rows = rows.select(["object_id", "ts", "lon", "lat", "speed"])
    print(f"data: the first {rows.num_rows:,} of {args.points:,} points, {len(g)} districts")
    cb = bench_city(d, g, args.memory_limit)
    build_place_index(cb)  # as the whole run's Parquet load has by the time it loads CSV
    try:
        csv_rates(cb, d, rows, g, args.csv_reps, args.memory_limit)
    finally:
        cb.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--districts", type=int, default=300)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--csv-rows", type=int, default=2_000_000, help="rows for the CSV load-rate comparison")
    ap.add_argument(
        "--csv-only",
        action="store_true",
        help="only the CSV comparison: no Parquet load, no queries (the same first rows of the points)",
    )
    ap.add_argument("--csv-reps", type=int, default=1, help="CSV comparisons, each into a new dataset")
    ap.add_argument("--no-geopandas", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--partition",
        default="day",
        choices=["day", "month", "year", "none"],
        help="time partition of citybase's table",
    )
    ap.add_argument(
        "--partition-cells",
        type=int,
        help="also split citybase's time partitions by the H3 cell of this resolution (e.g. 7)",
    )
    ap.add_argument("--queries", help="run only these queries, e.g. B1,B2,B4 (default: all)")
    ap.add_argument("--keep", type=Path, help="keep the data in this folder")
    ap.add_argument(
        "--memory-limit",
        help="DuckDB's memory limit for citybase and the DuckDB peer, e.g. 6GB (default: 80%% of RAM)",
    )
    ap.add_argument("--events", type=int, default=1000, help="events for B8 (nearest objects to each)")
    args = ap.parse_args()
    d = args.keep or Path(tempfile.mkdtemp(prefix="citybase-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict[str, float]] = {}
    try:
        if args.csv_only:
            csv_only(d, args)
            return
        t = time.perf_counter()
        parquet, g = make_data(d, args.points, args.districts, args.seed)
        print(
            f"data: {args.points:,} points, {len(g)} districts, generated in {time.perf_counter() - t:.1f} s"
        )
        meta = pq.ParquetFile(parquet).metadata
        print(f"plain parquet: {parquet.stat().st_size / 1e6:.0f} MB, {meta.num_row_groups} row groups")

        # ---- load ---------------------------------------------------------------------------
        cb = bench_city(d, g, args.memory_limit)
        cb.declare({**SPEC, "partition": args.partition, "partition_cells": args.partition_cells})
        t = time.perf_counter()
        r = cb.load("gps", parquet)
        load_s = time.perf_counter() - t
        assert r.added == args.points, r
        print(
            f"citybase load from Parquet: {args.points / load_s:,.0f} rows/s ({load_s:.1f} s), "
            f"with place keys; peak RSS so far {peak_rss_mb():,.0f} MB"
        )
        # What a running server's maintainer does within minutes of a load: merge each partition's
        # files into one run sorted by cell, and build the copy sorted by object (ADR 0010).
        # Timed apart from the load; queries run after it.
        files = len(cb.lake.data_files("gps"))
        t = time.perf_counter()
        done = cb.maintain()
        print(
            f"citybase maintain: {files} files -> {len(cb.lake.data_files('gps'))}, "
            f"{done.copied:,} rows copied by object, in {time.perf_counter() - t:.1f} s; "
            f"peak RSS so far {peak_rss_mb():,.0f} MB"
        )
        # The first rows only: reading the whole file here would dominate peak memory at 100M.
        small = pa.Table.from_batches([next(pq.ParquetFile(parquet).iter_batches(batch_size=args.csv_rows))])
        csv_rates(cb, d, small, g, args.csv_reps, args.memory_limit)
        del small
        # B8's events: points in the query box at random times of the query day.
        rng = np.random.default_rng(args.seed)
        first = next(pq.ParquetFile(parquet).iter_batches(batch_size=1, columns=["ts", "object_id"]))
        t0 = first.column(0)[0].as_py().replace(minute=0, second=0, microsecond=0)
        b = g.total_bounds
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        # About 1% of the points (the goal's selectivity): the generator is denser in the centre.
        w = (b[2] - b[0]) * 0.0275
        box = (cx - w, cy - w * 0.8, cx + w, cy + w * 0.8)
        day = (t0 + timedelta(days=10), t0 + timedelta(days=11))
        events = d / "events.parquet"
        pq.write_table(
            pa.table(
                {
                    "event_id": np.arange(args.events),
                    "ts": pa.array(
                        np.datetime64(day[0], "us")
                        + rng.integers(0, 86_400_000_000, args.events).astype("timedelta64[us]"),
                        pa.timestamp("us"),
                    ),
                    "lon": rng.uniform(box[0], box[2], args.events),
                    "lat": rng.uniform(box[1], box[3], args.events),
                }
            ),
            events,
        )
        cb.declare(EVENTS)
        cb.load("events", events)
        # Queries run in a fresh engine, as a server started on the stored lake would: what the
        # load and the merge held is given back, and the peak is taken again from here.
        cb.close()
        gc.collect()
        reset = reset_peak_rss()
        cb = CityBase.open(d / "cb", threads=THREADS, memory_limit=args.memory_limit)

        # ---- queries ------------------------------------------------------------------------
        q = cb.query
        src = f"read_parquet('{parquet}')"
        duck = connect(threads=THREADS, memory_limit=args.memory_limit)
        duck.register(
            "districts", pa.table({"code": [str(c) for c in g["code"]], "wkb": [x.wkb for x in g.geometry]})
        )
        duck.execute("CREATE TABLE d AS SELECT code, ST_GeomFromWKB(wkb) AS geom FROM districts")
        bx = f"lon BETWEEN {box[0]} AND {box[2]} AND lat BETWEEN {box[1]} AND {box[3]}"
        tw = f"ts >= TIMESTAMP '{day[0]}' AND ts < TIMESTAMP '{day[1]}'"
        # B3's object: the one with the median number of points that day. Not the first id (the
        # session 8 runs): every file's object range starts near it, so file statistics alone
        # skipped most files for that object, and no other.
        per_object = duck.execute(
            f"SELECT object_id FROM {src} WHERE {tw} GROUP BY object_id ORDER BY count(*), object_id"
        ).fetchall()
        obj = int(per_object[len(per_object) // 2][0]) if per_object else int(first.column(1)[0].as_py())
        # The peer returns the file's 5 columns; citybase is asked for the same ones (a reader's
        # scope), and once more for all its stored columns (place keys and provenance too). Both
        # fetch through DuckDB's parallel Arrow collector (`arrow_table`), as citybase's ranges do.
        same = ReadScope(fields=[f["name"] for f in SPEC["fields"]])
        qs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "B1 bbox": (
                lambda: q.bbox("gps", box, scope=same),
                lambda: arrow_table(duck, f"SELECT * FROM {src} WHERE {bx}"),
            ),
            "B1 bbox, all 17 columns": (
                lambda: q.bbox("gps", box),
                lambda: arrow_table(duck, f"SELECT * FROM {src} WHERE {bx}"),
            ),
            "B2 bbox+day": (
                lambda: q.range("gps", box, *day, scope=same),
                lambda: arrow_table(duck, f"SELECT * FROM {src} WHERE {bx} AND {tw}"),
            ),
            "B3 track": (
                lambda: q.track("gps", obj, *day, scope=same),
                lambda: arrow_table(
                    duck, f"SELECT * FROM {src} WHERE object_id = {obj} AND {tw} ORDER BY ts"
                ),
            ),
            "B4 knn k=10": (
                lambda: q.nearest("gps", cx, cy, 10, scope=same),
                # ST_Distance_Sphere takes (lat, lon) points.
                lambda: arrow_table(
                    duck,
                    f"SELECT *, ST_Distance_Sphere(ST_Point(lat, lon), ST_Point({cy}, {cx})) AS d FROM {src} "
                    "ORDER BY d LIMIT 10",
                ),
            ),
            "B5 per district per hour (1 day)": (
                lambda: q.counts_by_place("gps", "district", *day, every="1h"),
                lambda: arrow_table(
                    duck,
                    f"SELECT d.code, time_bucket(INTERVAL 1 HOUR, p.ts) AS h, count(*) FROM {src} p "
                    f"JOIN d ON ST_Contains(d.geom, ST_Point(p.lon, p.lat)) WHERE {tw.replace('ts', 'p.ts')} "
                    "GROUP BY ALL",
                ),
            ),
        }
        hour = "time_bucket(INTERVAL 1 HOUR, ts)"
        qs |= {
            "B6 H3 res 8 x hour (1 day)": (
                lambda: q.h3_bins("gps", 8, *day, every="1h"),
                # No H3 in DuckDB offline: its peer bins on a square grid of about the same cells.
                lambda: arrow_table(
                    duck,
                    f"SELECT floor(lon / 0.008) AS gx, floor(lat / 0.006) AS gy, {hour} AS h, count(*) "
                    f"FROM {src} WHERE {tw} GROUP BY ALL",
                ),
            ),
            "B7 trips of every object (1 day)": (
                lambda: q.trajectories("gps", *day)[0],
                lambda: arrow_table(duck, trips_sql(src, tw)),
            ),
            "B8 3 nearest objects, +-5 min": (
                lambda: q.nearest_join("events", "gps", k=3, time_tolerance="5min"),
                lambda: arrow_table(duck, knn_join_sql(f"read_parquet('{events}')", src, 3, 5)),
            ),
            "B8 3 nearest objects, any time": (
                lambda: q.nearest_join("events", "gps", k=3),
                lambda: arrow_table(duck, knn_join_sql(f"read_parquet('{events}')", src, 3, None)),
            ),
        }
        if args.queries:
            wanted = tuple(w.strip() + " " for w in args.queries.split(","))
            qs = {name: pair for name, pair in qs.items() if (name + " ").startswith(wanted)}
        print(f"\n{'query':<34}{'citybase p50':>13}{'p99':>9}{'duckdb p50':>12}{'p99':>9}{'ratio':>8}  rows")
        for name, (ours, peer) in qs.items():
            # The slow peers (DuckDB's B5 and any-time B8 joins: minutes at 100M) run fewer times.
            slow = name.startswith("B5") or name.endswith("any time")
            reps = max(3, args.reps // 5) if slow else args.reps
            p50, p99, out = timed(ours, reps)
            d50, d99, ref = timed(peer, reps)
            n_ours = out.num_rows if hasattr(out, "num_rows") else len(out)
            n_ref = ref.num_rows
            if not name.startswith("B6"):  # B6's peer bins on another grid
                assert n_ours == n_ref, f"{name}: citybase {n_ours} rows, DuckDB {n_ref}"
            if name.startswith(("B4", "B8")):  # the same distances (two haversines: 1e-6 apart)
                ours_d = np.sort(out.column("distance_m").to_numpy())
                assert np.allclose(ours_d, np.sort(ref.column("d").to_numpy()), rtol=1e-5), name
            res[name] = {"citybase_p50": p50, "citybase_p99": p99, "duckdb_p50": d50, "duckdb_p99": d99}
            print(
                f"{name:<34}{p50:>11.1f}ms{p99:>7.1f}ms{d50:>10.1f}ms{d99:>7.1f}ms{d50 / p50:>7.1f}x  "
                f"{n_ours:,} / {n_ref:,}"
            )
        # B5 as a rate over the whole table: place keys vs DuckDB's spatial join.
        if not args.queries or "B5" in args.queries.split(","):
            p50, _, _ = timed(lambda: q.counts_by_place("gps", "district", every="1h"), 2)
            d50, _, _ = timed(
                lambda: duck.execute(
                    f"SELECT d.code, time_bucket(INTERVAL 1 HOUR, p.ts) AS h, count(*) FROM {src} p "
                    "JOIN d ON ST_Contains(d.geom, ST_Point(p.lon, p.lat)) GROUP BY ALL"
                ).fetchall(),
                1,
            )
            print(
                f"B5 whole table: citybase {args.points / p50 * 1000 / 1e6:.1f} M points/s, "
                f"DuckDB spatial join {args.points / d50 * 1000 / 1e6:.2f} M points/s ({d50 / p50:.1f}x)"
            )
        if not args.no_geopandas:
            import geopandas as gpd

            t = time.perf_counter()
            tab = pq.read_table(parquet)
            pts = gpd.GeoDataFrame(
                tab.to_pandas(), geometry=gpd.points_from_xy(tab["lon"], tab["lat"]), crs=4326
            )
            print(f"\ngeopandas: read + build {time.perf_counter() - t:.1f} s")
            g50, _, _ = timed(lambda: pts.cx[box[0] : box[2], box[1] : box[3]], 5)
            print(
                f"geopandas B1 bbox p50 {g50:.1f} ms ({g50 / res['B1 bbox']['citybase_p50']:.1f}x citybase)"
            )
            t = time.perf_counter()
            gpd.sjoin(pts.iloc[: min(len(pts), 2_000_000)], g[["code", "geometry"]], predicate="within")
            gs = time.perf_counter() - t
            print(f"geopandas sjoin (2M points): {min(len(pts), 2_000_000) / gs / 1e6:.2f} M points/s")
            del pts, tab
        if reset:
            print(
                f"\npeak RSS while querying (citybase and DuckDB, after the reopen): {peak_rss_mb():,.0f} MB"
            )
        else:
            print(f"\npeak RSS of this process: {peak_rss_mb():,.0f} MB (all engines, one process)")
        print(f"finished {datetime.now():%Y-%m-%d %H:%M}")
        cb.close()
    finally:
        if args.keep is None:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
