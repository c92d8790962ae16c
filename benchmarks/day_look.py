"""The queries of st_bench.py's day on a lake it kept: through the copy by object and the table.

    python benchmarks/st_bench.py --points 100000000 --partition month --partition-cells 7 \
        --no-geopandas --queries B7 --keep /work/b100
    python benchmarks/day_look.py /work/b100
    python benchmarks/day_look.py /work/b100 --rebuild-copy   # the copy by object built anew

st_bench's day and B3's object (the one with the median number of points that day). B3 over the
day and over all time; B5 and B6 over the day as citybase runs them, then with the table forced
(`QueryCore.window_table`); B7 whole, then each of its steps alone: the read of the day's points
sorted by (object, time) through the copy (as B7 reads) and through the table, the arrays and
step lengths (`_Tracks`), the points a stay can hold (`_stay_runs`), the stays, the statistics.
With `--rebuild-copy`, the copy is first built again whole by the code in place, to compare
layouts of the copy on one lake (docs/adr/0010).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import pyarrow.parquet as pq

from citybase import CityBase
from citybase.query import tracks
from citybase.store import by_object


def timed(name: str, f: Callable[[], Any], reps: int) -> Any:
    """Print the p50 of `reps` runs after one warm-up; return the last result."""
    out = f()
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        out = f()
        runs.append(time.perf_counter() - t)
    print(f"{name:52} {statistics.median(runs) * 1000:9.1f} ms", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kept", type=Path, help="a folder kept by st_bench.py --keep")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rebuild-copy", action="store_true", help="build the copy by object again first")
    args = ap.parse_args()
    points = args.kept / "points.parquet"
    first = next(pq.ParquetFile(points).iter_batches(batch_size=1, columns=["ts"])).column(0)[0]
    t0 = first.as_py().replace(minute=0, second=0, microsecond=0)
    day = (t0 + timedelta(days=10), t0 + timedelta(days=11))  # st_bench.py's
    per_object = duckdb.sql(
        f"SELECT object_id FROM '{points}' WHERE ts >= '{day[0]}' AND ts < '{day[1]}' "
        "GROUP BY object_id ORDER BY count(*), object_id"
    ).fetchall()
    obj = int(per_object[len(per_object) // 2][0])

    with CityBase.open(args.kept / "cb") as cb:
        lake, q = cb.lake, cb.query
        if args.rebuild_copy:
            t = time.perf_counter()
            n = by_object._build(lake, lake.spec("gps"), lake.snapshot())
            print(f"copy by object built again: {n:,} rows in {time.perf_counter() - t:.1f} s")
        with lake.cursor() as cur:
            row = cur.execute(
                "SELECT count(*), sum(data_file_size_bytes) FROM ducklake_list_files('lake', ?)",
                [lake.copy_name("gps")],
            ).fetchone()
        files, size = row if row else (0, 0)
        print(f"copy by object: {files} files, {(size or 0) / 1e6:,.0f} MB")
        print(f"day {day[0]:%Y-%m-%d}, B3's object {obj}")

        timed("B3 over the day", lambda: q.track("gps", obj, *day), args.reps)
        timed("B3 over all time", lambda: q.track("gps", obj), args.reps)
        b5 = partial(q.counts_by_place, "gps", "district", *day, every="1h")
        b6 = partial(q.h3_bins, "gps", 8, *day, every="1h")
        print(f"B5, B6 read {'the copy' if q.window_table('gps', *day) else 'the table'}; then the table")
        timed("B5 per district per hour", b5, args.reps)
        timed("B6 H3 res 8 per hour", b6, args.reps)
        with mock.patch.object(type(q), "window_table", lambda *_: None):
            timed("B5 per district per hour, the table", b5, args.reps)
            timed("B6 H3 res 8 per hour, the table", b6, args.reps)
        timed("B7 whole", lambda: q.trajectories("gps", *day), args.reps)
        with q.cursor() as cur:
            copy = q.copies.relation(cur, "gps")
        reads = {"through the copy": copy, "through the table": None} if copy else {"through the table": None}
        pts = None
        for name, table in reads.items():
            src = q.source("gps", None, table=table)
            sql = (
                f"SELECT object_id AS o, ts AS t, lon, lat FROM {src.sql} AS s "
                f"WHERE {' AND '.join(q.time_where(src, *day))} ORDER BY o, t"
            )
            got = timed(f"read, sorted, {name}", partial(q.run, sql), args.reps)
            pts = got if pts is None else pts
        assert pts is not None
        tr = timed("arrays and step lengths (_Tracks, one thread)", lambda: tracks._Tracks(pts), args.reps)
        n = len(tr.t_us)
        rows, _ = tracks._stay_runs(tr.group, tr.t_us, tr.step_m, 100.0, 300.0)
        print(f"{n:,} points of {len(tr.starts):,} objects; {len(rows):,} of them can be in a stay")
        first_, _ = timed("stays (one thread)", lambda: tr.stay_points(0, n, 100.0, 300.0), args.reps)
        print(f"{len(first_):,} stays")
        timed("statistics (one thread)", lambda: tr.statistics("object_id"), args.reps)


if __name__ == "__main__":
    main()
