"""What a server's lake keeps after a day of pushes: with every snapshot kept, and with history
expired at each maintenance (docs/adr/0009).

    python benchmarks/history_bench.py --flushes 2000 --rows 250

The yardstick's day is about 500,000 new records. Here `--flushes` pushes of `--rows` of
st_bench.py's GPS points each go through the append log and are flushed into the lake, one flush
per push, as a server does every second; every `--maintain-every` flushes the platform maintains
itself, as the server's maintainer does every five minutes. Twice, on the same points: once
keeping every snapshot and file (`history: null`, as before ADR 0009), once forgetting the
history at each maintenance (`history: 0`: the most it can drop; the default keeps a day).
Prints, for each: files and bytes on disk, snapshots and data-file rows in the catalog, the
catalog's size, the mean flush time of the last hundred flushes, and a whole-table count by
district.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from citybase.sim import iter_gps_points
from citybase.sim.admin import districts
from st_bench import SPEC, bench_city, build_place_index


def run(
    d: Path, points: list[dict[str, object]], rows: int, every: int, keep: timedelta | None
) -> dict[str, float]:
    cb = bench_city(d, districts(300, seed=1), None)
    build_place_index(cb)
    cb.declare(SPEC)
    flush_s: list[float] = []
    for i in range(0, len(points), rows):
        cb.ingest("gps", points[i : i + rows])
        t = time.perf_counter()
        cb.flush()
        flush_s.append(time.perf_counter() - t)
        if (i // rows + 1) % every == 0:
            cb.maintain(keep)
    cb.maintain(keep)
    meta = "__ducklake_metadata_lake"
    snaps = cb.sql(f"SELECT count(*) AS n FROM {meta}.ducklake_snapshot").column("n")[0].as_py()
    files = cb.sql(f"SELECT count(*) AS n FROM {meta}.ducklake_data_file").column("n")[0].as_py()
    t = time.perf_counter()
    for _ in range(5):
        cb.query.counts_by_place("gps", "district")
    count_ms = (time.perf_counter() - t) / 5 * 1000
    cb.close()
    on_disk = list((d / "cb" / "lake").rglob("*.parquet"))
    return {
        "parquet files on disk": len(on_disk),
        "MB on disk": sum(f.stat().st_size for f in on_disk) / 1e6,
        "snapshots in the catalog": snaps,
        "data-file rows in the catalog": files,
        "catalog MB": (d / "cb" / "catalog.ducklake").stat().st_size / 1e6,
        "mean flush, last 100 (ms)": statistics.mean(flush_s[-100:]) * 1000,
        "count by district (ms)": count_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flushes", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=250, help="rows per push")
    ap.add_argument("--maintain-every", type=int, default=300, help="flushes between maintenances")
    ap.add_argument("--expired-first", action="store_true", help="run the expiring platform first")
    args = ap.parse_args()
    n = args.flushes * args.rows
    table = next(iter_gps_points(max(n, 1000), chunk_rows=n, seed=1)).select(
        ["object_id", "ts", "lon", "lat", "speed"]
    )
    points = table.to_pylist()
    d = Path(tempfile.mkdtemp(prefix="citybase-history-"))
    try:
        out = {}
        runs = [("every snapshot kept", None), ("history expired", timedelta(0))]
        for name, keep in runs[::-1] if args.expired_first else runs:
            t = time.perf_counter()
            out[name] = run(d / name.replace(" ", "-"), points, args.rows, args.maintain_every, keep)
            print(
                f"{name}: {args.flushes:,} flushes of {args.rows} rows in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
        print(f"{'':32}" + "".join(f"{k:>22}" for k in out))
        for key in out["every snapshot kept"]:
            print(f"{key:32}" + "".join(f"{v[key]:>22,.1f}" for v in out.values()))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
