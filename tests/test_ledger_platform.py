"""The platform records every load, push and compaction in its ledger, and the records hold up:
inclusion proofs verify offline, the audit rehashes the lake files, and tampering is found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase import CityBase
from citybase.cli.main import app
from citybase.deployment import Deployment
from citybase.errors import Conflict
from citybase.ledger import INGEST, RETIRE, audit
from citybase.platform import Maintenance

SPEC = {
    "name": "readings",
    "department": "eco",
    "system": "aq",
    "kind": "series",
    "fields": [
        {"name": "station"},
        {"name": "ts", "type": "timestamp"},
        {"name": "pm25", "type": "float", "min": 0},
    ],
    "time_field": "ts",
    "object_field": "station",
    "key": ["station", "ts"],
}


def entries(root: Path) -> list[dict[str, object]]:
    with CityBase.open(root) as cb:
        lg = cb.ledger
        lg.integrate()
        return [json.loads(lg.entry(i)) for i in range(lg.checkpoint().size)]


def test_loads_pushes_and_compactions_are_recorded_and_verify(tmp_path: Path) -> None:
    root = tmp_path / "base"
    csv = tmp_path / "r.csv"
    csv.write_text("station,ts,pm25\na,2026-01-01 00:00:00,3\nb,2026-01-01 00:00:00,-1\n", encoding="utf-8")
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
        loaded = cb.load("readings", csv)
        pushed = cb.ingest("readings", [{"station": "c", "ts": "2026-01-01 01:00:00", "pm25": 5}])
        again = cb.load("readings", csv)  # idempotent: nothing new, nothing recorded
        assert again.skipped and again.ledger_index is None
    got = entries(root)
    kinds = [e["kind"] for e in got]
    assert kinds.count(INGEST) == 3 and kinds.count("quarantine") == 1  # load, push, compaction
    load_fact = got[loaded.ledger_index or 0]["data"]
    assert load_fact["batch"] == loaded.batch and load_fact["rows"] == 1 and load_fact["quarantined"] == 1
    assert load_fact["files"] and all(len(f["sha256"]) == 64 for f in load_fact["files"])
    push_fact = got[pushed.ledger_index or 0]["data"]
    assert push_fact["digest"] == pushed.digest and push_fact["rows"] == 1

    # Anyone holding the proof file and the log's key verifies the push offline.
    runner = CliRunner()
    proof = tmp_path / "proof.json"
    r = runner.invoke(
        app, ["ledger", "proof", str(pushed.ledger_index), "-o", str(proof), "--root", str(root)]
    )
    assert r.exit_code == 0, r.output
    vkey = (root / "ledger" / "log.vkey").read_text().strip()
    r = runner.invoke(app, ["ledger", "verify", str(proof), "--log-key", vkey])
    assert r.exit_code == 0, r.output

    # The audit rebuilds the tree and rehashes every lake file the entries list.
    report = audit(root / "ledger", lake_root=root / "lake")
    assert report.ok and report.lake_files >= 2, report.problems


def test_a_changed_lake_file_is_found(tmp_path: Path) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
        cb.ingest("readings", [{"station": "a", "ts": f"2026-01-01 0{h}:00:00", "pm25": h} for h in range(5)])
    facts = [e for e in entries(root) if e["data"].get("files")]  # type: ignore[union-attr]
    victim = root / "lake" / facts[-1]["data"]["files"][0]["path"]  # type: ignore[index]
    time.sleep(0.01)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = audit(root / "ledger", lake_root=root / "lake")
    assert not report.ok and any("has changed" in p for p in report.problems)


def test_merging_small_files_keeps_every_row_and_the_audit(tmp_path: Path) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
        for h in range(6):  # six flushes: six small files
            cb.ingest("readings", [{"station": "a", "ts": f"2026-01-01 0{h}:00:00", "pm25": h}])
            cb.flush()
        before = len(cb.lake.data_files("readings"))
        merged = cb.maintain().merged
        after = len(cb.lake.data_files("readings"))
        rows = cb.sql("SELECT count(*) AS n, sum(pm25) AS s FROM lake.readings").to_pylist()[0]
        live = [Path(f) for f, _ in cb.lake.data_files("readings")]
    assert before == 6 and merged >= 6 and after < before
    assert rows == {"n": 6, "s": 15.0}
    report = audit(root / "ledger", lake_root=root / "lake")
    assert report.ok, report.problems
    # The merged files are listed too (a merged file keeps its inputs' first snapshot: listing
    # by snapshot missed them), so a change to the rows where they now lie is found.
    listed = {f["path"] for e in entries(root) if e["kind"] == INGEST for f in e["data"].get("files", [])}  # type: ignore[union-attr]
    assert {f.relative_to(root / "lake").as_posix() for f in live} <= listed
    data = bytearray(live[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    live[0].write_bytes(bytes(data))
    report = audit(root / "ledger", lake_root=root / "lake")
    assert not report.ok and any("has changed" in p for p in report.problems)


def _six_flushes(cb: CityBase) -> set[Path]:
    cb.declare(SPEC)
    for h in range(6):  # six flushes: six small files
        cb.ingest("readings", [{"station": "a", "ts": f"2026-01-01 0{h}:00:00", "pm25": h}])
        cb.flush()
    return {Path(f) for f, _ in cb.lake.data_files("readings")}


def test_history_older_than_kept_goes_and_the_audit_knows_why(tmp_path: Path) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        small = _six_flushes(cb)
        steps: list[tuple[str, int]] = []
        young = cb.maintain(progress=lambda table, files: steps.append((table, files)))
        # A day of history kept: the merged-away files stay.
        assert young.merged >= 6 and young.expired == young.removed == 0
        assert sum(n for _, n in steps) == young.merged and ("readings", 6) in steps
        assert len(small) == 6 and all(f.is_file() for f in small)
        done = cb.maintain(timedelta(0))
        live = {Path(f) for f, _ in cb.lake.data_files("readings")}
        rows = cb.sql("SELECT count(*) AS n, sum(pm25) AS s FROM lake.readings").to_pylist()[0]
        # Kept: the current snapshot, and the one before the copy by object's commit, where that
        # copy's change feed starts (store/by_object.py).
        assert cb.lake.oldest_snapshot() == cb.lake.snapshot() - 1
    assert rows == {"n": 6, "s": 15.0}
    assert done.merged == 0 and done.expired > 0 and done.removed >= 6
    assert not any(f.exists() for f in small)
    assert set((root / "lake" / "main" / "readings").rglob("*.parquet")) == live
    retired = [f["path"] for e in entries(root) if e["kind"] == RETIRE for f in e["data"]["files"]]  # type: ignore[index]
    assert len(retired) == len(set(retired)) == done.removed
    assert {root / "lake" / p for p in retired} >= small
    report = audit(root / "ledger", lake_root=root / "lake")
    assert report.ok, report.problems
    assert report.retired == done.removed
    # A file gone without a retire entry is still found out, by name.
    victim = sorted(live)[0]
    victim.unlink()
    report = audit(root / "ledger", lake_root=root / "lake")
    rel = victim.relative_to(root / "lake").as_posix()
    assert [p.split(": ", 1)[1] for p in report.problems] == [f"lake file {rel} is missing"]


def test_retired_files_are_in_the_ledger_before_they_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        small = _six_flushes(cb)
        cb.maintain()

        def crash(before: object) -> int:
            raise OSError("the machine stopped here")

        with monkeypatch.context() as m:
            m.setattr(cb.lake, "remove_retired_files", crash)
            with pytest.raises(OSError):
                cb.maintain(timedelta(0))
        assert all(f.is_file() for f in small)  # listed as retired, not deleted yet: still audited
        assert audit(root / "ledger", lake_root=root / "lake").ok
        again = cb.maintain(timedelta(0))
    assert again.removed >= 6 and not any(f.exists() for f in small)
    assert audit(root / "ledger", lake_root=root / "lake").ok


def test_files_no_commit_named_go_once_older_than_the_history(tmp_path: Path) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        _six_flushes(cb)
        live = sorted(Path(f) for f, _ in cb.lake.data_files("readings"))
        # What a write stopped by a crash leaves: a Parquet file in the table's folder that no
        # commit names (DuckLake writes the files of a large insert before it commits).
        orphan = live[0].with_name("ducklake-stopped-write.parquet")
        shutil.copy(live[0], orphan)
        # Young, it may be a write under way: kept whatever the history kept.
        assert cb.maintain(timedelta(0)).orphans == 0 and orphan.exists()
        old = time.time() - 2 * 3600
        os.utime(orphan, (old, old))
        assert cb.maintain(timedelta(hours=3)).orphans == 0 and orphan.exists()
        done = cb.maintain(timedelta(hours=1))
        rows = cb.sql("SELECT count(*) AS n FROM lake.readings").column("n")[0].as_py()
    assert done.orphans == 1 and not orphan.exists()
    assert rows == 6
    assert audit(root / "ledger", lake_root=root / "lake").ok


def test_cli_maintain(tmp_path: Path) -> None:
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        small = _six_flushes(cb)
    run = CliRunner().invoke
    r = run(app, ["maintain", "--root", str(root), "--keep-all"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "merged 6 small files; copied 6 rows by object; forgot 0 snapshots; deleted 0 files" in out
    r = run(app, ["maintain", "--root", str(root), "--keep-hours", "0"])
    assert r.exit_code == 0, r.output
    assert "merged 0 small files" in r.output and not any(f.exists() for f in small)
    assert run(app, ["maintain", "--keep-hours", "-1", "--root", str(root)]).exit_code != 0


def test_a_load_into_hundreds_of_partitions_is_recorded_whole(tmp_path: Path) -> None:
    # One file per day for 400 days: the file list is longer than one 64 KiB ledger entry holds.
    root = tmp_path / "base"
    csv = tmp_path / "days.csv"
    days = [date(2025, 1, 1) + timedelta(days=i) for i in range(400)]
    csv.write_text("station,ts,pm25\n" + "".join(f"a,{d} 00:00:00,1\n" for d in days), encoding="utf-8")
    with CityBase.open(root) as cb:
        cb.declare({**SPEC, "partition": "day"})
        res = cb.load("readings", csv)
        assert res.added == 400
        assert len(cb.lake.data_files("readings")) == 400
    listed = [
        f["path"] for e in entries(root) if e["data"].get("batch") == res.batch for f in e["data"]["files"]
    ]  # type: ignore[union-attr]
    ours = [p for p in listed if p.startswith("main/readings/")]  # (and the load's bookkeeping row)
    assert len(ours) == 400 == len(set(ours))
    assert audit(root / "ledger", lake_root=root / "lake").ok


def _hold(root: Path) -> subprocess.Popen[str]:
    """Another process that opens the platform at `root` and its ledger, and keeps them."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from citybase import CityBase; cb = CityBase.open({str(root)!r}); "
            "cb.ledger; print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_second_process_is_refused_the_embedded_platform(tmp_path: Path) -> None:
    """The embedded catalog is a DuckDB file, which one process holds (ADR 0007)."""
    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
    holder = _hold(root)
    try:
        with pytest.raises(Conflict, match="citybase serve"):
            CityBase.open(root)
    finally:
        holder.kill()
        holder.wait()
    with CityBase.open(root) as cb:  # and the holder's end freed it
        assert cb.sql("SELECT count(*) AS n FROM lake.readings").to_pylist() == [{"n": 0}]


def test_a_second_writer_is_refused_before_it_changes_anything(tmp_path: Path) -> None:
    """With a SQLite catalog, other processes may open the platform to read; they may not write."""
    root = tmp_path / "base"
    Deployment(catalog=f"sqlite:{tmp_path / 'catalog.sqlite'}", data_path=str(tmp_path / "lake")).write(root)
    csv = tmp_path / "r.csv"
    csv.write_text("station,ts,pm25\na,2026-01-01 00:00:00,3\n", encoding="utf-8")
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
    holder = _hold(root)
    try:
        with CityBase.open(root) as cb:
            with pytest.raises(Conflict, match="citybase serve"):
                cb.load("readings", csv)
            with pytest.raises(Conflict, match="citybase serve"):
                cb.ingest("readings", [{"station": "b", "ts": "2026-01-01 01:00:00", "pm25": 1}])
            assert cb.sql("SELECT count(*) AS n FROM lake.readings").to_pylist() == [{"n": 0}]
            assert cb.log.pending() == (0, 0)
    finally:
        holder.kill()
        holder.wait()


def test_maintenance_beside_flushes_loses_nothing_and_the_audit_passes(tmp_path: Path) -> None:
    """The server's two threads at once: pushes flushed one by one, and maintenance keeping no
    history, merging and deleting files under them."""
    import threading

    root = tmp_path / "base"
    with CityBase.open(root) as cb:
        cb.declare(SPEC)
        stop = threading.Event()
        done: list[Maintenance] = []
        failed: list[BaseException] = []

        def maintain() -> None:
            try:
                while not stop.is_set():
                    done.append(cb.maintain(timedelta(0)))
            except BaseException as e:  # the test fails below with it
                failed.append(e)

        t = threading.Thread(target=maintain)
        t.start()
        n = 120
        for i in range(n):
            ts = f"2026-01-{1 + i // 24:02d} {i % 24:02d}:00:00"
            assert cb.ingest("readings", [{"station": "a", "ts": ts, "pm25": i}]).accepted == 1
            cb.flush()
        stop.set()
        t.join(timeout=120)
        assert not failed, failed
        final = cb.maintain(timedelta(0))
        rows = cb.sql("SELECT count(*) AS n, sum(pm25) AS s FROM lake.readings").to_pylist()[0]
        live = {Path(f) for f, _ in cb.lake.data_files("readings")}
    assert rows == {"n": n, "s": float(sum(range(n)))}
    assert len(done) > 1 and sum(d.removed for d in done) + final.removed > 0
    assert set((root / "lake" / "main" / "readings").rglob("*.parquet")) == live
    report = audit(root / "ledger", lake_root=root / "lake")
    assert report.ok, report.problems[:5]
