"""Loading: the sample city and real files, through the same path `citybase load` takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase import CityBase
from citybase.cli.main import app
from citybase.sim import SimManifest, SimScale, simulate


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample-city")
    simulate(out, seed=3, scale=SimScale.tiny())
    return out


def test_sample_city_loads_with_its_bad_rows_quarantined(sample: Path, tmp_path: Path) -> None:
    m = SimManifest.load(sample)
    with CityBase.open(tmp_path) as cb:
        city = cb.setup_city(sample / m.city)
        assert {lvl.value for lvl in city.layers} == {"district", "street", "community", "grid", "building"}
        for name, (decl, data) in m.datasets.items():
            cb.declare(sample / decl)
            res = cb.load(name, sample / data)
            expected = next(f.rows for f in m.files if f.role == "data" and f.name == name)
            bad = {b.line for b in m.bad_rows if b.dataset == name}
            assert res.read == expected, name
            assert res.quarantined == len(bad), name
            assert res.added + res.duplicates == expected - len(bad), name
        q = cb.quarantine()
        got = {(r["source"].split("/")[-1], r["line"]) for r in q.to_pylist()}
        want = {(b.path.split("/")[-1], b.line) for b in m.bad_rows}
        assert got == want  # exactly the deliberately broken rows, at their lines
        # Every located row got its district key (the sample city's layers cover its data).
        hot = cb.sql("SELECT count(*) AS n, count(district) AS d, count(h3) AS h FROM lake.hotline_events")
        assert hot.to_pylist()[0]["n"] == hot.to_pylist()[0]["d"] == hot.to_pylist()[0]["h"] > 0
        # Loading the same file again adds nothing.
        name, (_, data) = next(iter(m.datasets.items()))
        again = cb.load(name, sample / data)
        assert again.skipped and again.added == 0


def test_place_keys_match_the_layers(sample: Path, tmp_path: Path) -> None:
    import numpy as np
    import shapely

    m = SimManifest.load(sample)
    with CityBase.open(tmp_path) as cb:
        city = cb.setup_city(sample / m.city)
        decl, data = m.datasets["hotline_events"]
        cb.declare(sample / decl)
        cb.load("hotline_events", sample / data)
        t = cb.sql("SELECT lon, lat, district, grid FROM lake.hotline_events")
        lon, lat = t.column("lon").to_numpy(), t.column("lat").to_numpy()
        for level, col in (
            (city.layers[lvl], lvl.value) for lvl in city.layers if lvl.value in ("district", "grid")
        ):
            ref = np.full(len(lon), None, dtype=object)
            for i in range(len(level.codes) - 1, -1, -1):
                ref[shapely.intersects_xy(level.geoms[i], lon, lat)] = level.codes[i]
            assert ref.tolist() == t.column(col).to_pylist()


GEOLIFE = {
    "name": "geolife",
    "department": "research",
    "system": "geolife",
    "kind": "tracks",
    "time_field": "time",
    "object_field": "track",
    "geometry": {"lon": "lon", "lat": "lat"},
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "track", "type": "string"},
        {"name": "lat", "type": "float"},
        {"name": "lon", "type": "float"},
        {"name": "altitude_m", "type": "float", "unit": "m"},
        {"name": "time", "type": "timestamp"},
    ],
}


def test_real_geolife_and_air_quality(shared: Path, tmp_path: Path) -> None:
    with CityBase.open(tmp_path) as cb:
        cb.declare(GEOLIFE)
        folder = shared / "trajectories/geolife_with_mode_labels/010/Trajectory"
        files = sorted(folder.glob("*.plt"))
        assert files
        total = sum(cb.load("geolife", f).added for f in files[:5])
        lines = sum(sum(1 for _ in f.open()) - 6 for f in files[:5])
        assert total == lines
        t = cb.sql("SELECT min(lat) s, max(lat) n, min(lon) w, max(lon) e FROM lake.geolife").to_pylist()[0]
        assert 18 < t["s"] < t["n"] < 54 and 73 < t["w"] < t["e"] < 135  # all within China

        cb.declare(
            {
                "name": "air_quality",
                "department": "eco-env",
                "system": "prsa",
                "kind": "series",
                "time_field": "observed_at",
                "object_field": "station",
                "fields": [
                    {"name": "station", "type": "string"},
                    {"name": "year", "type": "int"},
                    {"name": "month", "type": "int"},
                    {"name": "day", "type": "int"},
                    {"name": "hour", "type": "int"},
                    {"name": "observed_at", "type": "timestamp"},
                    {"name": "pm25", "type": "float", "source": "PM2.5", "unit": "µg/m³", "min": 0},
                ],
            }
        )
        f = shared / "sensors/beijing_prsa_multisite/PRSA_Data_Dongsi_20130301-20170228.csv.gz"
        res = cb.load("air_quality", f)
        # 35,064 hourly rows; observed_at is not in the file (built from year..hour by a view),
        # and "NA" PM2.5 values are not numbers: quarantined with their line, never dropped.
        assert res.read == 35_064
        q = cb.quarantine("air_quality")
        assert res.added + res.quarantined == 35_064
        assert set(q.column("reason").to_pylist()) == {"not a number (float)"}
        assert set(q.column("value").to_pylist()) == {"NA"}


def test_every_cli_command_has_help() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = [
        "city",
        "declare",
        "load",
        "datasets",
        "quarantine",
        "sql",
        "flush",
        "simulate",
        "demo",
        "query",
    ]
    for c in commands:
        r = runner.invoke(app, [c, "--help"])
        assert r.exit_code == 0, c
        assert c in top.output


def test_cli_load_prints_a_summary(sample: Path, tmp_path: Path) -> None:
    m = SimManifest.load(sample)
    runner = CliRunner()
    root = str(tmp_path / "base")
    assert runner.invoke(app, ["city", str(sample / m.city), "--root", root]).exit_code == 0
    decl, data = m.datasets["hotline_events"]
    assert runner.invoke(app, ["declare", str(sample / decl), "--root", root]).exit_code == 0
    r = runner.invoke(app, ["load", "hotline_events", str(sample / data), "--root", root])
    assert r.exit_code == 0, r.output
    assert "quarantined" in r.output
    r2 = runner.invoke(app, ["load", "hotline_events", str(sample / data), "--root", root])
    assert "already loaded" in r2.output
    r3 = runner.invoke(
        app, ["sql", "SELECT count(*) AS n FROM lake.hotline_events", "--root", root, "--json"]
    )
    assert r3.exit_code == 0 and '"n"' in r3.output


#: Points with an id, a time and lon/lat under other names, for the load-path tests below.
PINGS = {
    "name": "pings",
    "department": "transport",
    "system": "gps",
    "kind": "points",
    "time_field": "ts",
    "geometry": {"lon": "x", "lat": "y"},
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
    ],
}


def _write_pings(path: Path, n: int, *, days: int, seed: int, row_group_size: int | None = None) -> None:
    """`n` random PINGS rows (ids 0..n-1, `days` days from 2026-01-01, around Beijing) as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us")
    table = pa.table(
        {
            "id": np.arange(n),
            "ts": start + rng.integers(0, 86_400_000_000 * days, n).astype("timedelta64[us]"),
            "x": rng.uniform(116.2, 116.6, n),
            "y": rng.uniform(39.8, 40.1, n),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def test_a_large_load_lets_go_of_each_chunk_before_it_commits(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One file is one transaction; DuckDB holds a registered Arrow table until the transaction
    ends, so the lake reads each chunk as a stream (store/lake.py `_register_once`). Held, the
    Arrow memory of a load would grow by a chunk per chunk (16.8 GB for 100M points)."""
    import pyarrow as pa

    import citybase.gateway.load as load
    from citybase.gateway.readers.base import ReadOptions
    from citybase.store.lake import Lake

    n, chunk = 400_000, 50_000
    _write_pings(tmp_path / "points.parquet", n, days=28, seed=5, row_group_size=chunk)
    held: list[tuple[int, int]] = []  # (Arrow bytes allocated after an insert, that chunk's bytes)
    insert = Lake.insert_rows

    def measured(self: Lake, cur, dataset: str, rows, **kw) -> int:  # type: ignore[no-untyped-def]
        nbytes = 0

        def counted():  # type: ignore[no-untyped-def]
            nonlocal nbytes
            for table in rows:
                nbytes += table.nbytes
                yield table

        added = insert(self, cur, dataset, counted(), **kw)
        held.append((pa.total_allocated_bytes(), nbytes))
        return added

    monkeypatch.setattr(load, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(Lake, "insert_rows", measured)
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        res = cb.load("pings", tmp_path / "points.parquet", options=ReadOptions(batch_rows=chunk))
        assert res.added == n
    assert len(held) == n // chunk
    growth = max(a for a, _ in held) - held[0][0]
    # Held chunks add about a chunk's bytes per insert (measured: 5.5 chunks over the 8); what is
    # in flight besides (the next chunk being built) varies by at most about one.
    assert growth < 2 * held[0][1], (growth, held)


def test_a_bad_file_found_bad_mid_load_says_so_and_commits_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The rows stream into DuckDB's insert, so a reader that fails after the first chunk fails
    inside DuckDB's scan: the error is still the reader's own, and the load is all or nothing."""
    import pytest

    import citybase.gateway.load as load
    from citybase.errors import InputError
    from citybase.gateway.readers.base import ReadOptions

    n = 300_000  # ~9 MB: the bad byte lies past the reader's first 8 MB block
    lines = [f"{i},2026-01-01 00:{i % 60:02d}:00,{116.3 + i * 1e-7:.7f},39.9" for i in range(n)]
    body = ("id,ts,x,y\n" + "\n".join(lines) + "\n").encode()
    at = len(body) - 1000
    (tmp_path / "points.csv").write_bytes(body[:at] + b"\xff\xfe" + body[at + 2 :])
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        monkeypatch.setattr(load, "CHUNK_ROWS", 100_000)  # a chunk, then the bad byte in the next
        with pytest.raises(InputError, match=r"points\.csv.*UTF-8"):
            cb.load("pings", tmp_path / "points.csv", options=ReadOptions(batch_rows=40_000))
        assert cb.sql("SELECT count(*) AS n FROM lake.pings").to_pylist() == [{"n": 0}]
        assert cb.lake.find_load("pings", load.file_digest(tmp_path / "points.csv")) is None


def test_columns_the_same_in_every_row_are_stored_as_such(tmp_path: Path) -> None:
    """A load adds its provenance and the keys of the layers the city lacks after its sort
    (Lake.insert_rows `same`): they must land as if sorted with the rest."""

    n = 20_000
    _write_pings(tmp_path / "points.parquet", n, days=60, seed=9)
    with CityBase.open(tmp_path / "base") as cb:  # no city: every admin level is null
        cb.declare(PINGS)
        res = cb.load("pings", tmp_path / "points.parquet")
        got = cb.sql(
            "SELECT count(*) AS n, count(DISTINCT _batch) AS batches, min(_batch) AS batch,"
            " count(DISTINCT _ingested_at) AS times, count(_ingested_at) AS timed,"
            " count(district) + count(street) + count(grid) + count(building) AS keyed,"
            " count(h3) AS cells, sum(id) AS ids FROM lake.pings"
        ).to_pylist()[0]
    assert got == {
        "n": n,
        "batches": 1,
        "batch": res.batch,
        "times": 1,
        "timed": n,
        "keyed": 0,
        "cells": n,
        "ids": n * (n - 1) // 2,
    }


def test_files_loaded_together_store_what_they_store_alone(shared: Path, tmp_path: Path) -> None:
    """`load_many` shares one commit among small files: the rows, batches, load records and
    ledger facts must be those of loading each file alone; only the lake files are fewer."""
    import json

    files = sorted(shared.glob("trajectories/geolife_with_mode_labels/*/Trajectory/*.plt"))
    assert len(files) >= 5
    files.append(files[0])  # the same content twice: the second is skipped
    with CityBase.open(tmp_path) as cb:
        cb.declare(GEOLIFE)
        cb.declare({**GEOLIFE, "name": "together"})
        alone = [cb.load("geolife", f) for f in files]
        seen: list[str] = []
        together = cb.load_many("together", files, done=lambda r: seen.append(r.source))
        assert seen == [str(f) for f in files]  # each file reported once, in order
        for a, t in zip(alone, together, strict=True):
            assert (a.read, a.added, a.quarantined, a.skipped, a.digest) == (
                t.read,
                t.added,
                t.quarantined,
                t.skipped,
                t.digest,
            )
            assert t.batch == f"together-{t.digest[:16]}"
        assert together[-1].skipped and not together[0].skipped
        cols = "user, track, lat, lon, altitude_m, time, h3, _line, replace(_batch, 'geolife', 'x') AS b"
        order = "ORDER BY b, _line"
        a_rows = cb.sql(f"SELECT {cols} FROM lake.geolife {order}")
        t_rows = cb.sql(f"SELECT {cols.replace('geolife', 'together')} FROM lake.together {order}")
        assert a_rows.num_rows == sum(r.added for r in alone) > 0
        assert a_rows.to_pylist() == t_rows.to_pylist()
        assert len(cb.lake.data_files("together")) < len(cb.lake.data_files("geolife"))
        # One ledger fact per file, found by its digest; the commit's lake files listed once.
        listed: list[str] = []
        cb.ledger.flush()  # (entries are read once integrated)
        for r in together[:-1]:
            assert r.ledger_index is not None and r.ledger_index in cb.ledger.find(r.digest)
            fact = json.loads(cb.ledger.entry(r.ledger_index))["data"]
            assert (fact["batch"], fact["rows"]) == (r.batch, r.added)
            listed += [Path(f["path"]).name for f in fact["files"] if f["table"] == "together"]
        assert sorted(listed) == sorted(Path(p).name for p, _ in cb.lake.data_files("together"))
        assert all(r.skipped for r in cb.load_many("together", files))


def test_a_bad_file_among_many_stops_the_load_where_alone_it_would(tmp_path: Path) -> None:
    """A group that fails is loaded again file by file: the files before the bad one are added,
    the error names the bad one, and nothing after it is."""
    from citybase.errors import InputError
    from citybase.gateway import load

    for i in range(4):
        body = "".join(f"{i * 10 + k},2026-01-01 00:0{k}:00,116.3,39.9\n" for k in range(3))
        bad = b"\xff\xfe" if i == 2 else b""  # file 2 is not UTF-8
        (tmp_path / f"f{i}.csv").write_bytes(f"id,ts,x,y\n{body}".encode() + bad)
    paths = [tmp_path / f"f{i}.csv" for i in range(4)]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        done: list[str] = []
        with pytest.raises(InputError, match=r"f2\.csv"):
            cb.load_many("pings", paths, done=lambda r: done.append(Path(r.source).name))
        assert done == ["f0.csv", "f1.csv"]
        loaded = [cb.lake.find_load("pings", load.file_digest(p)) is not None for p in paths]
        assert loaded == [True, True, False, False]
        assert cb.sql("SELECT sum(id) AS s FROM lake.pings").to_pylist() == [{"s": 0 + 1 + 2 + 10 + 11 + 12}]


def test_files_loaded_together_keep_a_declared_key_in_file_order(tmp_path: Path) -> None:
    """With a declared key, the first file's row of a key stays, as when loading one by one."""
    for i in range(3):
        (tmp_path / f"f{i}.csv").write_text(
            "id,ts,x,y\n" + "".join(f"{k},2026-01-01 00:00:0{i},116.{3 + i},39.9\n" for k in (1, 2))
        )
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare({**PINGS, "key": ["id"]})
        res = cb.load_many("pings", [tmp_path / f"f{i}.csv" for i in range(3)])
        assert [(r.added, r.duplicates) for r in res] == [(2, 0), (0, 2), (0, 2)]
        got = cb.sql("SELECT id, lon FROM lake.pings ORDER BY id").to_pylist()
    assert got == [{"id": 1, "lon": 116.3}, {"id": 2, "lon": 116.3}]


def test_cli_loads_a_folder_and_lists_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from citybase.cli import main

    folder = tmp_path / "pings"
    folder.mkdir()
    for i in range(5):
        rows = "".join(f"{i * 10 + k},2026-01-0{i + 1} 00:00:0{k},116.3,39.9\n" for k in range(3))
        (folder / f"day{i}.csv").write_text("id,ts,x,y\n" + rows)
    (tmp_path / "pings.json").write_text(json.dumps(PINGS))
    root = str(tmp_path / "base")
    runner = CliRunner()
    assert runner.invoke(app, ["declare", str(tmp_path / "pings.json"), "--root", root]).exit_code == 0
    r = runner.invoke(app, ["load", "pings", str(folder), "--root", root])
    assert r.exit_code == 0, r.output
    assert all(f"│ day{i}.csv" in r.output for i in range(5)) and "all 5 files" in r.output
    again = runner.invoke(app, ["load", "pings", str(folder), "--root", root])
    assert again.output.count("already loaded") == 5
    n = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM lake.pings", "--root", root, "--json"])
    assert '"n": 15' in n.output or '"n":15' in n.output, n.output
    # A long list shows only the files with something to say, and the totals.
    (tmp_path / "pings.json").write_text(json.dumps({**PINGS, "name": "more"}))
    assert runner.invoke(app, ["declare", str(tmp_path / "pings.json"), "--root", root]).exit_code == 0
    monkeypatch.setattr(main, "SUMMARY_FILES", 2)
    r = runner.invoke(app, ["load", "more", str(folder), "--root", root])
    assert r.exit_code == 0, r.output
    assert "│ day0.csv" not in r.output  # (a table row; the progress line may name it)
    assert "all 5 files" in r.output and "5 more, loaded" in r.output
    assert "citybase maintain" not in r.output  # one commit, one file a day: nothing to merge
    # Many small files: the summary says how to merge them.
    (tmp_path / "pings.json").write_text(json.dumps({**PINGS, "name": "many"}))
    assert runner.invoke(app, ["declare", str(tmp_path / "pings.json"), "--root", root]).exit_code == 0
    monkeypatch.setattr(main, "MERGE_HINT_FILES", 5)
    for f in sorted(folder.iterdir()):
        r = runner.invoke(app, ["load", "many", str(f), "--root", root])
    hint = "many is in 5 files of 3 rows on average: citybase maintain merges them"
    assert hint in " ".join(r.output.split())


def test_groups_of_small_files_stop_at_their_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from citybase.gateway import load

    monkeypatch.setattr(load, "GROUP_FILES", 3)
    monkeypatch.setattr(load, "GROUP_BYTES", 250)
    sizes = [100, 100, 100, 10, 10, 10, 10, 60]
    paths = []
    for i, n in enumerate(sizes):
        (tmp_path / f"{i}").write_bytes(b"x" * n)
        paths.append(tmp_path / f"{i}")
    got = [[int(p.name) for p in g] for g in load.groups(paths)]
    # 100+100 (a third would pass 250 bytes), 100+10+10 (three files), 10+10+60.
    assert got == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert [p for g in load.groups(paths) for p in g] == paths  # every path once, in order
