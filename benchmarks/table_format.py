"""Table-format measurement behind ADR 0001: DuckLake (sorted, small row groups) vs plain Parquet.

    python benchmarks/table_format.py --points 10000000

Prints write time and p50 latency of a bbox+time and a bbox query on both, and on the DuckLake
files read directly by file list (what the query engine does to skip the catalog round trip).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citybase.store.engine import connect


def p50(con: object, q: str, k: int = 9) -> tuple[float, object]:
    ts, r = [], None
    for _ in range(k):
        t = time.perf_counter()
        r = con.execute(q).fetchall()  # type: ignore[attr-defined]
        ts.append(time.perf_counter() - t)
    return sorted(ts)[k // 2] * 1000, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--row-group", type=int, default=16_384)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="citybase-tf-"))
    try:
        n = args.points
        rng = np.random.default_rng(1)
        ts = np.datetime64("2026-01-01T00:00:00", "us") + rng.integers(0, 30 * 86400 * 10**6, n).astype(
            "timedelta64[us]"
        )
        tbl = pa.table(
            {
                "id": rng.integers(0, 10000, n),
                "ts": ts,
                "x": rng.uniform(116, 117, n),
                "y": rng.uniform(39.5, 40.5, n),
                "v": rng.normal(size=n),
            }
        )
        con = connect(threads=2)
        t = time.perf_counter()
        pq.write_table(tbl, d / "plain.parquet")
        print(f"plain parquet write: {time.perf_counter() - t:.2f} s")
        con.execute(f"ATTACH 'ducklake:sqlite:{d}/cat.sqlite' AS lake (DATA_PATH '{d}/data/')")
        con.execute(f"CALL lake.set_option('parquet_row_group_size', {args.row_group})")
        con.execute(
            "CREATE TABLE lake.pts(id BIGINT, ts TIMESTAMP, x DOUBLE, y DOUBLE, v DOUBLE, hk UINTEGER)"
        )
        con.execute("ALTER TABLE lake.pts SET PARTITIONED BY (year(ts), month(ts), day(ts))")
        con.register("tbl", tbl)
        t = time.perf_counter()
        con.execute(
            "INSERT INTO lake.pts SELECT id, ts, x, y, v, ST_Hilbert(x, y, "
            "{'min_x': 116, 'min_y': 39.5, 'max_x': 117, 'max_y': 40.5}::BOX_2D) AS hk FROM tbl ORDER BY hk"
        )
        print(f"ducklake write (sorted, {args.row_group}-row groups): {time.perf_counter() - t:.2f} s")
        files = [
            r[0] for r in con.execute("SELECT data_file FROM ducklake_list_files('lake', 'pts')").fetchall()
        ]
        direct = "read_parquet([" + ",".join(f"'{f}'" for f in files) + "])"
        qs = {
            "bbox+time": "SELECT count(*), avg(v) FROM {s} WHERE x BETWEEN 116.40 AND 116.45 "
            "AND y BETWEEN 39.9 "
            "AND 39.95 AND ts BETWEEN '2026-01-10' AND '2026-01-14'",
            "bbox": "SELECT count(*) FROM {s} WHERE x BETWEEN 116.40 AND 116.50 AND y BETWEEN 39.9 AND 40.0",
        }
        for qn, q in qs.items():
            res = {
                name: p50(con, q.format(s=src))
                for name, src in [
                    ("plain", f"'{d}/plain.parquet'"),
                    ("ducklake", "lake.pts"),
                    ("ducklake files", direct),
                ]
            }
            assert len({r[1][0][0] for r in res.values()}) == 1, res  # type: ignore[index]
            print(qn, "  ".join(f"{name}: {ms:.1f} ms" for name, (ms, _) in res.items()))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
