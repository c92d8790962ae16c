"""Maintenance under steady ingest: what each merge rewrites, by size band or as DuckLake merges.

    python benchmarks/maintain_bench.py --points 10000000 --batches 12 --batch-rows 20000

A lake of N points (month partitions split by H3 cell 7, as st_bench.py's goals run), loaded and
maintained once, is copied twice. On each copy the same batches of new points are loaded, each an
hour of a city's feed: its times within one hour of the day B3 asks about (batch i: hour i mod 24;
st_bench.py's day), its objects spread over all of the lake's. Each is followed by a maintenance,
as a server's maintainer runs every few minutes between flushes. One copy merges as citybase does
(files only with files of their own size band, `store/lake.py` MERGE_BANDS, docs/adr/0011); the
other as DuckLake does by default (every file under its target size, 512 MB, is a candidate),
which was citybase's way before. Printed per policy: maintenance time per batch, megabytes written
by the merges (the table and its copy by object), files in the table, and B1, B3 and B7
afterwards (B3 over the fed day and over all time, B7 over the fed day). With `--trace`, each
maintenance too: a copy by object is built again whole once the rows appended to it pass 10% of
its last build (store/by_object.py, REBUILD_SHARE).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybase import CityBase
from citybase.query.scope import ReadScope
from citybase.sim import iter_gps_points
from citybase.store import lake as lake_module
from citybase.store.lake import CATALOG, MERGE_BANDS
from st_bench import SPEC, THREADS, bench_city, make_data, timed

FIELDS = ["object_id", "ts", "lon", "lat", "speed"]
#: The peer: one band no file reaches, so every file under the table's target size (DuckLake
#: skips larger ones) is a candidate, as in DuckLake's default merge, citybase's before ADR 0011.
DUCKLAKE_DEFAULT = (1 << 62,)


def opened(
    now: dict[str, tuple[str, int]], copy: str, obj: int, day: tuple[datetime, datetime]
) -> tuple[int, int, int]:
    """The copy's files (of `files()`), those whose object range holds `obj` (the files a track of
    it over all time opens), and those of them whose time range meets `day` (over that day)."""
    paths = [p for p, (table, _) in now.items() if table == copy]
    hit = hit_day = 0
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        if not meta.num_row_groups:  # (a slice of a whole build that held no rows)
            print(f"  {path}: no rows")
            continue
        o, t = meta.schema.names.index("object_id"), meta.schema.names.index("ts")
        objects = [meta.row_group(i).column(o).statistics for i in range(meta.num_row_groups)]
        times = [meta.row_group(i).column(t).statistics for i in range(meta.num_row_groups)]
        if min(s.min for s in objects) <= obj <= max(s.max for s in objects):
            hit += 1
            hit_day += min(s.min for s in times) < day[1] and max(s.max for s in times) >= day[0]
    return len(paths), hit, hit_day


def files(cb: CityBase) -> dict[str, tuple[str, int]]:
    """The gps table's and its copy's files: path -> (table, size)."""
    out: dict[str, tuple[str, int]] = {}
    with cb.lake.cursor() as cur:
        for table in ("gps", cb.lake.copy_name("gps")):
            for path, size in cur.execute(
                f"SELECT data_file, data_file_size_bytes FROM ducklake_list_files('{CATALOG}', ?)", [table]
            ).fetchall():
                out[path] = (table, int(size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=12, help="loads, each followed by a maintenance")
    ap.add_argument("--batch-rows", type=int, default=20_000, help="rows per load (500k a day: ~20k an hour)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--memory-limit", default="6GB")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bands", help="citybase's merge bands in MB, e.g. 1,8,64 (default: MERGE_BANDS)")
    ap.add_argument(
        "--trace", action="store_true", help="each maintenance's time, rows copied, the copy's files, and B3"
    )
    ap.add_argument("--no-peer", action="store_true", help="citybase's merge only, not DuckLake's default")
    ap.add_argument("--keep", type=Path, help="move citybase's lake here at the end, for a look afterwards")
    args = ap.parse_args()
    bands = tuple(int(float(mb) * (1 << 20)) for mb in args.bands.split(",")) if args.bands else MERGE_BANDS

    with tempfile.TemporaryDirectory(prefix="citybase-maintain-") as tmp:
        d = Path(tmp)
        parquet, g = make_data(d, args.points, 300, args.seed)
        cb = bench_city(d, g, args.memory_limit)
        cb.declare({**SPEC, "partition": "month", "partition_cells": 7})
        t = time.perf_counter()
        cb.load("gps", parquet)
        cb.maintain()
        print(f"lake: {args.points:,} points loaded and maintained in {time.perf_counter() - t:.1f} s")
        cb.close()
        ids = pq.read_table(parquet, columns=["object_id"]).column(0)
        # B3's object; the batches' objects (the simulator's own run of ids each) spread over all
        # of the lake's, so that each batch spans every object's range, as a real feed's does.
        obj, objects = int(ids[args.points // 2].as_py()), int(pc.max(ids).as_py()) + 1
        del ids
        first = next(pq.ParquetFile(parquet).iter_batches(batch_size=1, columns=["ts"])).column(0)[0]
        t0 = first.as_py().replace(minute=0, second=0, microsecond=0)
        day = (t0 + timedelta(days=10), t0 + timedelta(days=11))  # st_bench.py's
        batches = []
        for i, chunk in enumerate(
            iter_gps_points(args.batches * args.batch_rows, args.batch_rows, seed=args.seed + 1)
        ):
            spread = (chunk.column("object_id").to_numpy() * 7919 + i) % objects
            hour = np.datetime64(day[0] + timedelta(hours=i % 24), "us")
            ts = chunk.column("ts").to_numpy().astype("datetime64[us]")
            within = (ts - ts.astype("datetime64[h]")).astype("timedelta64[us]")
            chunk = chunk.set_column(1, "ts", pa.array(hour + within)).set_column(
                0, "object_id", pa.array(spread)
            )
            path = d / f"batch{i}.parquet"
            pq.write_table(chunk.select(FIELDS), path)
            batches.append(path)
        # B1's box (st_bench.py's).
        b = g.total_bounds
        cx, cy, w = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) * 0.0275
        box = (cx - w, cy - w * 0.8, cx + w, cy + w * 0.8)

        policies = {"size bands (citybase)": bands, "DuckLake's default": DUCKLAKE_DEFAULT}
        if args.no_peer:
            del policies["DuckLake's default"]
        print(
            f"\n{args.batches} loads of {args.batch_rows:,} rows, each followed by a maintenance:\n"
            f"{'merge policy':<24}{'maintain p50':>13}{'max':>9}{'MB written (table + copy)':>26}{'files':>7}"
            f"{'B1 p50':>9}{'B3 day':>9}{'B3 all':>9}{'B7 day':>9}"
        )
        for name, policy in policies.items():
            root = d / f"cb-{len(name)}"
            shutil.copytree(d / "cb", root)
            if args.trace:
                print(f"{name}:")
            lake_module.MERGE_BANDS = policy
            print(f"{name:<24}{steady(root, batches, box, obj, day, args)}", flush=True)
            if args.keep and policy == bands:
                shutil.move(root, args.keep)
                at = ",".join(f"{float(v):.6f}" for v in box)
                print(f"  kept: benchmarks/kept_lake_look.py {args.keep} --box {at} --object {obj}")
            else:
                shutil.rmtree(root)


def steady(
    root: Path,
    batches: list[Path],
    box: tuple[float, float, float, float],
    obj: int,
    day: tuple[datetime, datetime],
    args: argparse.Namespace,
) -> str:
    """Load each batch and maintain after it (merging by the bands set in `lake.MERGE_BANDS`);
    the figures as one line of the table."""
    cb = CityBase.open(root, threads=THREADS, memory_limit=args.memory_limit)
    same = ReadScope(fields=FIELDS)
    took, written = [], {"gps": 0, cb.lake.copy_name("gps"): 0}
    for n, path in enumerate(batches):
        cb.load("gps", path)
        before = files(cb)
        t = time.perf_counter()
        done = cb.maintain()
        took.append(time.perf_counter() - t)
        now = files(cb)
        for f, (table, size) in now.items():
            written[table] += size if f not in before else 0
        if args.trace:
            b3 = timed(lambda: cb.query.track("gps", obj, *day, scope=same), args.reps)[0]
            total, hit, hit_day = opened(now, cb.lake.copy_name("gps"), obj, day)
            print(
                f"  load {n}: maintenance {took[-1]:.2f} s, {done.copied:,} rows copied, copy {total} files "
                f"({hit} hold the object, {hit_day} of them on the day), B3 day {b3:.1f} ms"
            )
    n_files = len(cb.lake.data_files("gps"))
    b1 = timed(lambda: cb.query.bbox("gps", box, scope=same), args.reps)[0]
    b3 = timed(lambda: cb.query.track("gps", obj, *day, scope=same), args.reps)[0]
    b3_all = timed(lambda: cb.query.track("gps", obj, scope=same), args.reps)[0]
    b7 = timed(lambda: cb.query.trajectories("gps", *day), args.reps)[0]
    cb.close()
    mb = " + ".join(f"{v / 1e6:,.0f}" for v in written.values())
    return (
        f"{statistics.median(took):>11.2f} s{max(took):>7.2f} s{mb:>26}{n_files:>7}"
        f"{b1:>7.1f}ms{b3:>7.1f}ms{b3_all:>7.1f}ms{b7:>7.0f}ms"
    )


if __name__ == "__main__":
    main()
