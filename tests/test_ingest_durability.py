"""Acknowledged rows survive crashes, are stored exactly once, and bad rows are kept with reasons."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from citybase.platform import CityBase

SPEC: dict[str, Any] = {
    "name": "readings",
    "department": "eco-env",
    "system": "aq-monitoring",
    "kind": "series",
    "time_field": "ts",
    "object_field": "station",
    "geometry": {"lon": "lon", "lat": "lat"},
    "fields": [
        {"name": "station", "type": "string", "required": True},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
        {"name": "pm25", "type": "float", "unit": "µg/m³", "min": 0},
        {"name": "seq", "type": "int"},
    ],
}


def rows(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "station": f"s{i % 7}",
            "ts": f"2026-11-0{1 + i % 9} 0{i % 10}:00:00",
            "lon": 116.3 + (i % 50) / 1000,
            "lat": 39.9,
            "pm25": float(i % 300),
            "seq": i,
        }
        for i in range(start, start + n)
    ]


def test_ingest_flush_and_idempotency(tmp_path: Path) -> None:
    with CityBase.open(tmp_path) as cb:
        cb.declare(SPEC)
        r1 = cb.ingest("readings", rows(0, 100), idempotency_key="batch-1")
        r2 = cb.ingest("readings", rows(0, 100), idempotency_key="batch-1")
        assert (r1.accepted, r1.duplicate) == (100, False)
        assert (r2.accepted, r2.duplicate) == (0, True)
        assert cb.log.pending() == (1, 100)
        assert cb.flush() == 1
        assert cb.log.pending() == (0, 0)
        # A retry after compaction is still recognised.
        assert cb.ingest("readings", rows(0, 100), idempotency_key="batch-1").duplicate
        assert cb.sql("SELECT count(*) AS n FROM lake.readings").column("n")[0].as_py() == 100


def test_bad_rows_are_quarantined_with_line_field_and_reason(tmp_path: Path) -> None:
    bad = rows(0, 5)
    bad[1]["pm25"] = "lots"
    bad[2]["ts"] = "yesterday"
    bad[3]["pm25"] = -3
    bad[4]["lon"] = 999
    with CityBase.open(tmp_path) as cb:
        cb.declare(SPEC)
        res = cb.ingest("readings", bad, source="push-42")
        assert res.accepted == 1
        got = {(r["line"], r["field"], r["reason"]) for r in res.rejected}
        assert got == {
            (2, "pm25", "not a number (float)"),
            (3, "ts", "not a time"),
            (4, "pm25", "below the minimum 0"),
            (5, "lon", "coordinates outside the world (lon -180..180, lat -90..90)"),
        }
        cb.flush()
        q = cb.quarantine("readings")
        assert q.num_rows == 4
        assert set(q.column("source").to_pylist()) == {"push-42"}
        # The whole raw row is kept: nothing is lost.
        assert '"pm25": "lots"' in q.filter(q.column("line").to_numpy() == 2).column("raw")[0].as_py()


def test_crash_between_lake_commit_and_log_truncation_duplicates_nothing(tmp_path: Path) -> None:
    cb = CityBase.open(tmp_path)
    cb.declare(SPEC)
    for b in range(3):
        cb.ingest("readings", rows(b * 10, 10))

    def crash(seq: int) -> None:
        raise KeyboardInterrupt("power cut")

    cb.log.truncate_through = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cb.flush()
    cb.lake.close()  # the process dies here: nothing else is cleaned up
    cb.log.close()
    cb.ledger.close()  # (the OS would release its lock)
    with CityBase.open(tmp_path) as cb:  # reopening replays from the lake's watermark
        t = cb.sql("SELECT count(*) AS n, count(DISTINCT seq) AS d FROM lake.readings")
        assert t.to_pylist() == [{"n": 30, "d": 30}]
        assert cb.log.pending() == (0, 0)


CHILD = textwrap.dedent(
    """
    import sys
    from citybase.platform import CityBase
    sys.path.insert(0, {tests!r})
    from test_ingest_durability import SPEC, rows
    cb = CityBase.open({root!r})
    cb.declare(SPEC)
    i = 0
    while True:
        r = cb.ingest("readings", rows(i * 20, 20), idempotency_key=f"k{{i}}")
        print(i, flush=True)  # acknowledged: the batch is on disk
        if i % 5 == 4:
            cb.flush()
        i += 1
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("work_s", [0.3, 1.1, 2.3])
def test_kill_minus_nine_loses_no_acknowledged_row(tmp_path: Path, work_s: float) -> None:
    root = tmp_path / "city"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(root), tests=str(Path(__file__).parent))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the first acknowledgement (start-up varies)
    assert first.strip() == "0", "the child acknowledged nothing"
    time.sleep(work_s)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    acked = [0] + [int(x) for x in out.split()]
    with CityBase.open(root) as cb:
        seqs = cb.sql("SELECT seq FROM lake.readings").column("seq").to_pylist()
        assert len(seqs) == len(set(seqs)), "a row was stored twice"
        stored = set(seqs)
        for i in acked:
            assert set(range(i * 20, i * 20 + 20)) <= stored, f"acknowledged batch {i} lost"
        assert len(stored) >= 20 * len(acked)


def test_a_lake_from_before_per_log_marks_replays_its_log_once(tmp_path: Path) -> None:
    """A lake written by a citybase that kept one watermark (not one per log) upgrades in place."""
    with CityBase.open(tmp_path) as cb:
        cb.declare(SPEC)
        cb.ingest("readings", rows(0, 50))
    # A crash with 30 rows acknowledged and not yet in the lake, the lake holding its mark the old way.
    script = textwrap.dedent(
        """
        import os, sys
        from citybase.platform import CityBase
        from test_ingest_durability import rows
        cb = CityBase.open(sys.argv[1])
        assert cb.ingest("readings", rows(50, 30)).accepted == 30
        with cb.lake.transaction() as cur:
            mark = cb.lake.watermark(cb.log.id)
            cur.execute("DELETE FROM lake.citybase_log_marks")
            cur.execute("INSERT INTO lake.citybase_watermark VALUES (?)", [mark])
        os._exit(0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, timeout=120)
    for _ in range(2):  # the replay at the first start; nothing again at the second
        with CityBase.open(tmp_path) as cb:
            assert cb.sql(
                "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM lake.readings"
            ).to_pylist() == [{"n": 80, "d": 80}]
            assert cb.sql("SELECT count(*) AS n FROM lake.citybase_watermark").to_pylist() == [{"n": 0}]
            marks = cb.sql("SELECT log_id FROM lake.citybase_log_marks").column("log_id").to_pylist()
            assert marks == [cb.log.id]
