"""DuckLake catalogs under one process's concurrent use: commit and read latency (ADR 0007).

    .venv/bin/python benchmarks/catalog_bench.py --seconds 30

The load is what `citybase serve` puts on its catalog. Three threads share one DuckDB database:

- a writer commits `--rows` rows every 50 ms (the flusher);
- a reader asks for the newest snapshot every 10 ms (the snapshot checks before direct file reads);
- a scanner counts the table every 50 ms (queries through DuckLake).

Each catalog runs in turn, on the same work:

- the DuckDB file (the embedded default);
- SQLite in WAL mode (ADR 0001's embedded choice);
- SQLite with the writer and the reader serialised by one lock, which our own catalog reads could
  do (scans cannot be serialised with the writer without holding it for the whole query);
- PostgreSQL, with `--postgres DSN`.

Printed per catalog and per thread: p50 / p99 / max latency, and how many operations waited over
0.5 s. DuckDB's bundled SQLite sleeps whole seconds when it meets a lock (ADR 0007).

`--growth N` instead commits N small inserts (10 rows, a file each, none merged) on one thread and
prints, at points along the way, the commit latency of the last 100 commits, a scan of the table
and a snapshot read, and at the end the catalog's size on disk: how each catalog ages.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np

from citybase.store.engine import connect, load_aliased

META = "__ducklake_metadata_lake"  # DuckLake's name for the attached catalog database


def run(catalog: str, root: Path, seconds: float, rows: int, serialise: bool) -> dict[str, list[float]]:
    con = connect(threads=2)
    attach(con, catalog, root)
    gate = threading.Lock() if serialise else contextlib.nullcontext()
    stop = time.time() + seconds
    out: dict[str, list[float]] = {"commit": [], "snapshot": [], "scan": []}

    def writer() -> None:
        i = 0
        while time.time() < stop:
            t0 = time.perf_counter()
            with gate:
                cur = con.cursor()
                cur.execute("BEGIN")
                cur.execute(f"INSERT INTO lake.t SELECT range + {i}, now() FROM range({rows})")
                cur.execute("COMMIT")
                cur.close()
            out["commit"].append(time.perf_counter() - t0)
            i += rows
            time.sleep(0.05)

    def reader() -> None:
        cur = con.cursor()
        while time.time() < stop:
            t0 = time.perf_counter()
            with gate:
                cur.execute(f"SELECT max(snapshot_id) FROM {META}.ducklake_snapshot").fetchone()
            out["snapshot"].append(time.perf_counter() - t0)
            time.sleep(0.01)

    def scanner() -> None:
        cur = con.cursor()
        while time.time() < stop:
            t0 = time.perf_counter()
            cur.execute("SELECT count(*) FROM lake.t WHERE v > 100").fetchone()
            out["scan"].append(time.perf_counter() - t0)
            time.sleep(0.05)

    threads = [threading.Thread(target=f) for f in (writer, reader, scanner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    con.close()
    return out


def growth(catalog: str, root: Path, commits: int) -> None:
    con = connect(threads=2)
    attach(con, catalog, root)
    times: list[float] = []
    for i in range(commits):
        t0 = time.perf_counter()
        con.execute(f"INSERT INTO lake.t SELECT range + {i * 10}, now() FROM range(10)")
        times.append(time.perf_counter() - t0)
        if i + 1 in (100, commits // 2, commits):
            t0 = time.perf_counter()
            con.execute("SELECT count(*) FROM lake.t WHERE v > 100").fetchone()
            scan = time.perf_counter() - t0
            t0 = time.perf_counter()
            con.execute(f"SELECT max(snapshot_id) FROM {META}.ducklake_snapshot").fetchone()
            snap = time.perf_counter() - t0
            last = np.array(times[-100:]) * 1000
            print(
                f"  after {i + 1:,} commits: commit p50 {np.percentile(last, 50):.1f} ms,"
                f" p99 {np.percentile(last, 99):.1f} ms; scan {scan * 1000:.1f} ms;"
                f" snapshot read {snap * 1000:.2f} ms",
                flush=True,
            )
    con.close()
    files = [f for f in root.iterdir() if f.name.startswith("catalog.")]
    if files:  # (a PostgreSQL catalog has none here)
        print(f"  catalog on disk: {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")


def attach(con: duckdb.DuckDBPyConnection, catalog: str, root: Path) -> None:
    if catalog.startswith("sqlite:"):
        db = sqlite3.connect(catalog.removeprefix("sqlite:"))
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
    if catalog.startswith("postgres:"):
        load_aliased(con, "postgres")
    con.execute(f"ATTACH 'ducklake:{catalog}' AS lake (DATA_PATH '{root}/data/')")
    con.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
    con.execute("CREATE OR REPLACE TABLE lake.t (v BIGINT, ts TIMESTAMP)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30, help="how long each catalog runs")
    ap.add_argument("--rows", type=int, default=2000, help="rows per commit")
    ap.add_argument("--postgres", help="also a PostgreSQL catalog: libpq conninfo of an empty database")
    ap.add_argument(
        "--growth", type=int, metavar="N", help="instead: N commits on one thread, as a catalog ages"
    )
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    cases = [
        ("DuckDB file", "duckdb:{d}/catalog.ducklake", False),
        ("SQLite (WAL)", "sqlite:{d}/catalog.sqlite", False),
        ("SQLite, reads serialised", "sqlite:{d}/catalog.sqlite", True),
    ]
    if args.postgres:
        cases.append(("PostgreSQL", f"postgres:{args.postgres}", False))
    if args.growth:
        try:
            for k, (name, catalog, serialise) in enumerate(cases):
                if not serialise:
                    d = base / str(k)
                    d.mkdir()
                    print(name)
                    growth(catalog.format(d=d), d, args.growth)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    head = ("catalog", "operation", "count", "p50 ms", "p99 ms", "max ms", ">0.5 s")
    print("{:26} {:9} {:>6} {:>8} {:>8} {:>8} {:>6}".format(*head))
    try:
        for k, (name, catalog, serialise) in enumerate(cases):
            d = base / str(k)
            d.mkdir()
            out = run(catalog.format(d=d), d, args.seconds, args.rows, serialise)
            for op, times in out.items():
                a = np.array(times) * 1000
                print(
                    f"{name:26} {op:9} {len(a):6d} {np.percentile(a, 50):8.1f} {np.percentile(a, 99):8.1f}"
                    f" {a.max():8.1f} {int((a > 500).sum()):6d}"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
