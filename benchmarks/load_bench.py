"""Bulk-load rate alone: N GPS points from Parquet into a table with place keys (300 districts).

    python benchmarks/load_bench.py --points 10000000 [--partition day]

The same data and declaration as st_bench.py, without the queries: for quick before/after
measurements of the load path. The place index is built inside the timed load, as a user sees it.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from citybase import CityBase
from citybase.model.city import Level
from citybase.places.city import City, Layer
from st_bench import SPEC, make_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--partition", default="day", choices=["day", "month", "year", "none"])
    ap.add_argument("--memory-limit", help="DuckDB's memory limit, e.g. 4GB (default: 80%% of RAM)")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="citybase-load-"))
    try:
        # Generated in a child process, so that this process's peak RSS is the load's own.
        with ProcessPoolExecutor(1) as ex:
            parquet, g = ex.submit(make_data, d, args.points, 300, 7).result()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cb = CityBase.open(d / "cb", threads=2, memory_limit=args.memory_limit)
        codes = np.array([str(c) for c in g["code"]], dtype=object)
        none = np.array([None] * len(g), dtype=object)
        layer = Layer(Level.district, codes, codes.copy(), none, np.array(g.geometry.values, dtype=object))
        cb.setup_city(City("bench", "UTC", 12, {Level.district: layer}))
        cb.declare({**SPEC, "partition": args.partition})
        t = time.perf_counter()
        r = cb.load("gps", parquet)
        dt = time.perf_counter() - t
        assert r.added == args.points, r
        print(f"{args.points / dt:,.0f} rows/s ({dt:.1f} s), {len(cb.lake.data_files('gps'))} files")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the loading process {rss:,.0f} MB (before the load: {rss_before:,.0f} MB)")
        cb.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
