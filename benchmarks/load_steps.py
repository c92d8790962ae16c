"""Where a CSV load's time goes: each step of `load_files` timed alone, and DuckDB's own writes.

    python benchmarks/load_steps.py --rows 2000000

The same points and city as `st_bench.py --csv-only` (300 districts, H3 resolution 12). Each step
runs on its own, in the order a load runs them, with wall and CPU seconds (CPU counts every
thread). Then DuckDB writes the keyed rows itself, unsorted, sorted by (day, cell) as the lake
sorts them, sorted without the columns that are constant or null in every row, and partitioned by
day too; and copies the CSV's own columns, as st_bench's peer does.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from citybase.gateway.conform import conform
from citybase.gateway.load import _with_types, file_digest
from citybase.gateway.readers.base import ReadOptions, reader_for
from citybase.places.enrich import enrich
from citybase.sim import iter_gps_points
from citybase.sim.admin import districts
from citybase.store.engine import connect
from st_bench import SPEC, bench_city, build_place_index


def timed(name: str, f: Callable[[], Any]) -> Any:
    t, c = time.perf_counter(), time.process_time()
    out = f()
    print(
        f"{name:44} wall {time.perf_counter() - t:6.3f} s   CPU {time.process_time() - c:6.3f} s", flush=True
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="load-steps-"))
    try:
        points = next(iter_gps_points(10_000_000, chunk_rows=args.rows, seed=args.seed))
        points = points.select(["object_id", "ts", "lon", "lat", "speed"])
        csv = d / "points.csv"
        pacsv.write_csv(points, csv)
        cb = bench_city(d / "base", districts(300, seed=args.seed), None)
        build_place_index(cb)
        assert cb.city is not None
        city = cb.city
        cb.declare({**SPEC, "name": "steps"})
        spec = cb.lake.spec("steps")
        print(f"{args.rows:,} rows, {csv.stat().st_size / 1e6:,.0f} MB of CSV")

        timed("file digest (SHA-256)", lambda: file_digest(csv))
        options = _with_types(spec, ReadOptions())
        raws = timed(
            "CSV read", lambda: [pa.Table.from_batches([b]) for b in reader_for(csv).read(csv, options)]
        )
        good = timed(
            "conform", lambda: [conform(spec, r, tz="UTC", source=str(csv), batch="b").good for r in raws]
        )
        whole = pa.concat_tables(good)
        lon, lat = whole.column("lon").to_numpy(), whole.column("lat").to_numpy()
        timed("place keys (districts and H3)", lambda: city.keys(lon, lat))
        keyed = timed(
            "enrich (keys, provenance, layout)",
            lambda: pa.concat_tables([enrich(city, spec, g, "b") for g in good]),
        )

        def insert() -> int:
            with cb.lake.transaction() as cur:
                return cb.lake.insert_rows(cur, "steps", keyed)

        timed(f"sorted insert of {keyed.num_columns} columns, committed", insert)
        cb.close()

        pq.write_table(keyed, d / "keyed.parquet")
        con = connect(threads=2)
        con.execute(f"CREATE TABLE keyed AS SELECT * FROM '{d}/keyed.parquet'")
        opts = "FORMAT parquet, COMPRESSION lz4, ROW_GROUP_SIZE 16384"
        # Columns the same in every row of a load (its batch, the time it arrived) or null in all
        # of them (layers this city lacks): carried through the sort, they are sorted too.
        flat = [c for c in keyed.column_names if keyed.column(c).null_count == keyed.num_rows]
        lean = ", ".join(c for c in keyed.column_names if c not in {"_batch", "_ingested_at", *flat})
        order = "ORDER BY date_trunc('day', ts), h3"
        days = "year(ts) AS y, month(ts) AS m, day(ts) AS dd"
        for name, sql in [
            ("DuckDB: COPY of the keyed rows", f"COPY keyed TO '{d}/a.parquet' ({opts})"),
            ("DuckDB: the same, sorted", f"COPY (SELECT * FROM keyed {order}) TO '{d}/b.parquet' ({opts})"),
            (
                "DuckDB: sorted, no constant or null columns",
                f"COPY (SELECT {lean} FROM keyed {order}) TO '{d}/l.parquet' ({opts})",
            ),
            (
                "DuckDB: the same, sorted and partitioned",
                f"COPY (SELECT *, {days} FROM keyed {order}) TO '{d}/c' ({opts}, PARTITION_BY (y, m, dd))",
            ),
            (
                "DuckDB: CSV-to-Parquet copy (st_bench's peer)",
                f"COPY (SELECT * FROM read_csv('{csv}')) TO '{d}/e.parquet'",
            ),
        ]:
            timed(name, partial(con.execute, sql))
        con.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
