"""The copy sorted by object (docs/adr/0010): build it again on a kept benchmark lake, and time B3.

    python benchmarks/st_bench.py --points 100000000 --partition month --partition-cells 7 \
        --no-geopandas --memory-limit 6GB --keep /tmp/st100      # once: the data and the lake
    python benchmarks/copy_bench.py /tmp/st100 --file-size 64MB --slice-rows 8000000

Drops the `gps` dataset's copy, builds it whole with the given file size and slice size (a fresh
process, so the peak RSS printed is the build's), then times one object's track over a day for
three objects (the 1/3, median and 2/3 by points that day) against DuckDB over the plain Parquet
file st_bench.py wrote, which lists each object's points together.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from citybase import CityBase
from citybase.query.scope import ReadScope
from citybase.store import by_object
from citybase.store.engine import arrow_table, connect

FIELDS = ["object_id", "ts", "lon", "lat", "speed"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder kept by st_bench.py --keep")
    ap.add_argument("--file-size", default=by_object.COPY_FILE_SIZE, help="the copy's target file size")
    ap.add_argument("--slice-rows", type=int, default=by_object.SLICE_ROWS, help="rows sorted at a time")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--memory-limit", default="6GB")
    args = ap.parse_args()
    by_object.COPY_FILE_SIZE, by_object.SLICE_ROWS = args.file_size, args.slice_rows

    cb = CityBase.open(args.folder / "cb", threads=2, memory_limit=args.memory_limit)
    with cb.lake.transaction() as cur:
        cb.lake.drop_copy(cur, "gps")
    t = time.perf_counter()
    rows = by_object.refresh(cb.lake, "gps")
    build = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cur = cb.lake.cursor()
    files = [
        r[0]
        for r in cur.execute(f"FROM ducklake_list_files('lake', '{cb.lake.copy_name('gps')}')").fetchall()
    ]
    groups = cur.execute(
        f"SELECT count(*) FROM parquet_metadata([{', '.join(repr(f) for f in files)}]) "
        "WHERE path_in_schema = 'object_id'"
    ).fetchone()
    print(
        f"copy: {rows:,} rows in {build:.1f} s, peak RSS {rss:,.0f} MB, {len(files)} files, "
        f"{groups[0] if groups else 0:,} row groups "
        f"(file size {args.file_size}, slices of {args.slice_rows:,} rows)"
    )

    start = cur.execute("SELECT min(ts) FROM lake.gps").fetchone()[0]  # type: ignore[index]
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=10)
    day = (day0, day0 + timedelta(days=1))
    window = f"ts >= TIMESTAMP '{day[0]}' AND ts < TIMESTAMP '{day[1]}'"
    plain = f"read_parquet('{args.folder / 'points.parquet'}')"
    duck = connect(threads=2, memory_limit=args.memory_limit)
    ranked = duck.execute(
        f"SELECT object_id FROM {plain} WHERE {window} GROUP BY object_id ORDER BY count(*), object_id"
    ).fetchall()
    n = len(ranked)
    objects = [int(ranked[i][0]) for i in (n // 3, n // 2, 2 * n // 3)]
    scope = ReadScope(fields=FIELDS)

    def p50(run: Callable[[int], object]) -> float:
        xs = []
        for _ in range(args.reps):
            for o in objects:
                a = time.perf_counter()
                run(o)
                xs.append(time.perf_counter() - a)
        return statistics.median(xs) * 1000

    peer = f"SELECT * FROM {plain} WHERE object_id = {{}} AND {window} ORDER BY ts"
    for o in objects:  # warm both, and check they agree
        want = arrow_table(duck, peer.format(o))
        assert cb.query.track("gps", o, *day, scope=scope).to_pylist() == want.select(FIELDS).to_pylist(), o
    ours = p50(lambda o: cb.query.track("gps", o, *day, scope=scope))
    theirs = p50(lambda o: arrow_table(duck, peer.format(o)))
    print(
        f"B3 track p50 over objects {objects}: citybase {ours:.1f} ms, DuckDB {theirs:.1f} ms "
        f"({theirs / ours:.1f}x)"
    )
    cb.close()


if __name__ == "__main__":
    main()
