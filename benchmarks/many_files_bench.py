"""Loading a folder of small files: one commit per file, files together, and DuckDB's glob copy.

    python benchmarks/many_files_bench.py --files 300 --rows 100

A department's export is often thousands of small files (a file per sensor per day). Each file
loaded alone costs a commit and the catalog's bookkeeping, far more than reading it;
`CityBase.load_many` loads small files together in one commit. The points are st_bench.py's, in
its city of 300 districts, cut into `--files` CSV files of `--rows` rows. Peer: DuckDB copying the
same files to one Parquet file through a glob (`read_csv('dir/*.csv')`), with no keys and no
checks. Prints rates, ratios and the lake files each way leaves.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv

from citybase.sim import iter_gps_points
from citybase.sim.admin import districts
from citybase.store.engine import connect
from st_bench import SPEC, THREADS, bench_city, build_place_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--rows", type=int, default=100, help="rows per file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="citybase-many-"))
    try:
        n = args.files * args.rows
        points = next(iter_gps_points(max(n, 1000), chunk_rows=n, seed=args.seed))
        points = points.select(["object_id", "ts", "lon", "lat", "speed"])
        folder = d / "files"
        folder.mkdir()
        for i in range(args.files):
            pacsv.write_csv(points.slice(i * args.rows, args.rows), folder / f"part-{i:05d}.csv")
        files = sorted(folder.glob("*.csv"))
        cb = bench_city(d, districts(300, seed=args.seed), None)
        build_place_index(cb)
        print(f"{args.files:,} CSV files of {args.rows:,} rows ({n:,} rows)")

        cb.declare({**SPEC, "name": "alone"})
        t = time.perf_counter()
        alone = [cb.load("alone", f) for f in files]
        t_alone = time.perf_counter() - t
        assert sum(r.added for r in alone) == n

        cb.declare({**SPEC, "name": "together"})
        t = time.perf_counter()
        together = cb.load_many("together", files)
        t_together = time.perf_counter() - t
        assert sum(r.added for r in together) == n

        con = connect(threads=THREADS)
        t = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM read_csv('{folder}/*.csv')) TO '{d}/copy.parquet' (FORMAT parquet)")
        t_duck = time.perf_counter() - t
        con.close()

        for name, secs, lake_files in [
            ("citybase, a commit per file (load)", t_alone, len(cb.lake.data_files("alone"))),
            ("citybase, files together (load_many)", t_together, len(cb.lake.data_files("together"))),
            ("DuckDB, glob copy to one Parquet file", t_duck, 1),
        ]:
            print(
                f"{name:40} {secs:7.2f} s  {secs / args.files * 1000:6.1f} ms/file  "
                f"{n / secs:>10,.0f} rows/s  {lake_files:>5} files"
            )
        print(
            f"load_many is {t_alone / t_together:.1f}x load per file; "
            f"DuckDB's copy is {t_together / t_duck:.1f}x load_many"
        )
        cb.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
