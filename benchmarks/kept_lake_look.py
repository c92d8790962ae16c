"""B1 and B3 on a lake kept by `maintain_bench.py --keep DIR`: as kept, with its history
forgotten, and after one full DuckLake merge. Which of the files and the history costs reads?

    python benchmarks/kept_lake_look.py /work/steady100 --box 116.398,39.893,116.416,39.908 --object 50081

`maintain_bench.py` prints the box and the object with the kept lake's path. The lake is changed:
its history is forgotten and its files merged.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path

from citybase import CityBase
from citybase.query.scope import ReadScope
from citybase.store import lake as lake_module
from citybase.store.lake import CATALOG
from maintain_bench import DUCKLAKE_DEFAULT, FIELDS
from st_bench import THREADS, timed


def look(cb: CityBase, label: str, box: tuple[float, ...], obj: int, reps: int) -> None:
    meta = f"__ducklake_metadata_{CATALOG}"
    row = cb.lake.con.cursor().execute(f"SELECT count(*) FROM {meta}.ducklake_snapshot").fetchone()
    same = ReadScope(fields=FIELDS)
    b1 = timed(lambda: cb.query.bbox("gps", box, scope=same), reps)
    b3 = timed(lambda: cb.query.track("gps", obj, scope=same), reps)
    print(
        f"{label}: {len(cb.lake.data_files('gps'))} live files, {row[0] if row else 0} snapshots, "
        f"B1 {b1[0]:.1f} / {b1[1]:.1f} ms ({b1[2].num_rows:,} rows), B3 {b3[0]:.1f} / {b3[1]:.1f} ms",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lake", type=Path, help="a CityBase root kept by maintain_bench.py --keep")
    ap.add_argument("--box", required=True, help="B1's box: min lon, min lat, max lon, max lat")
    ap.add_argument("--object", type=int, required=True, help="B3's object")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    box = tuple(float(v) for v in args.box.split(","))
    cb = CityBase.open(args.lake, threads=THREADS, memory_limit="6GB")
    look(cb, "as kept", box, args.object, args.reps)
    t = time.perf_counter()
    cb.maintain(keep=timedelta(0))
    print(f"  history forgotten in {time.perf_counter() - t:.1f} s")
    look(cb, "no history", box, args.object, args.reps)
    lake_module.MERGE_BANDS = DUCKLAKE_DEFAULT
    t = time.perf_counter()
    merged = cb.lake.merge_small_files()
    cb.maintain(keep=timedelta(0))
    print(f"  {merged} files merged in {time.perf_counter() - t:.1f} s")
    look(cb, "fully merged, no history", box, args.object, args.reps)
    cb.close()


if __name__ == "__main__":
    main()
