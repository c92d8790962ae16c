"""The cluster deployment's parts that run here: a PostgreSQL lake catalog and metadata database
shared by two platform roots (two machines), and Dask reading the lake's files without citybase.

Needs the PostgreSQL server (127.0.0.1:5432, as the README says how to start it) and the
`cluster` extra; skips without them, except under CI=true, where it must run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase import CityBase
from citybase.cli.main import app
from citybase.deployment import Deployment
from citybase.errors import DeclarationError
from citybase.ledger import audit
from citybase.ports import listening
from citybase.sim.scale import SimManifest

PG_HOST, PG_PORT = "127.0.0.1", 5432


def _need(ok: bool, msg: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        _need(False, "psycopg is not installed: pip install 'citybase[cluster]'")
    _need(
        listening(PG_HOST, PG_PORT),
        f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}; start it with "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
    )
    name = f"citybase_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _deploy(root: Path, database: str, data: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "deploy",
            "--root",
            str(root),
            "--catalog",
            f"postgres:dbname={database} host={PG_HOST} port={PG_PORT} user=postgres",
            "--data-path",
            str(data),
            "--meta-url",
            f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{database}",
        ],
    )
    assert r.exit_code == 0, r.output


def test_two_roots_share_one_postgresql_lake(
    database: str, tmp_path: Path, demo_city: tuple[Path, Path]
) -> None:
    embedded_root, source = demo_city
    shared = tmp_path / "shared-lake"
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    _deploy(a, database, shared)
    _deploy(b, database, shared)
    m = SimManifest.load(source)
    names = ["vehicle_positions", "hotline_events", "ps_residents"]
    with CityBase.open(a) as cb:
        cb.setup_city(source / m.city)
        for name in names:
            decl, data = m.datasets[name]
            cb.declare(source / decl)
            cb.load(name, source / data)
        dept = cb.datasets["hotline_events"].department
        cb.registry.add_department(dept)
        key = cb.registry.issue_key(dept).key
    # Nothing of the lake or the metadata is in the roots: catalog and registry are in PostgreSQL.
    assert not (a / "catalog.sqlite").exists() and not (a / "meta.sqlite").exists()
    assert list(shared.rglob("*.parquet"))
    box = (116.30, 39.85, 116.45, 39.97)
    with CityBase.open(embedded_root) as ref, CityBase.open(b) as cb:
        assert set(names) <= set(cb.datasets)
        assert cb.registry.authenticate(key) is not None  # a key issued on A works on B
        for name in names:
            n = f"SELECT count(*) AS n FROM lake.{name}"
            assert cb.sql(n).column("n")[0].as_py() == ref.sql(n).column("n")[0].as_py() > 0
        # The same query gives the same rows on the cluster lake as on the embedded one.
        cols, order = ["vehicle_id", "ts", "lon", "lat"], [("vehicle_id", "ascending"), ("ts", "ascending")]
        got = cb.query.bbox("vehicle_positions", box).select(cols).sort_by(order)
        want = ref.query.bbox("vehicle_positions", box).select(cols).sort_by(order)
        assert got.num_rows == want.num_rows > 0
        assert got.equals(want)
    # B ingests through its own append log and flushes into the shared lake; A sees the row.
    with CityBase.open(b) as cb:
        count = "SELECT count(*) AS n FROM lake.vehicle_positions"
        before = cb.sql(count).column("n")[0].as_py()
        res = cb.ingest(
            "vehicle_positions",
            [{"vehicle_id": "cluster-1", "ts": "2026-11-24T08:00:00", "gps_lon": 116.4, "gps_lat": 39.9}],
        )
        assert res.accepted == 1, res
        cb.flush()
    with CityBase.open(a) as cb:
        assert cb.sql(count).column("n")[0].as_py() == before + 1
        got = cb.query.track("vehicle_positions", "cluster-1")
        assert got.column("lon").to_pylist() == [116.4]
    # Both ingest at once, each through its own log, flushing in turn: each log has its own mark
    # in the lake, so neither takes the other's flushes for its own (a shared mark lost rows).
    with CityBase.open(a) as ca, CityBase.open(b) as cb:
        for i in range(6):
            for who, c in (("a", ca), ("b", cb)):
                row = {
                    "vehicle_id": f"both-{who}",
                    "ts": f"2026-11-24T09:00:0{i}",
                    "gps_lon": 116.4,
                    "gps_lat": 39.9,
                }
                assert c.ingest("vehicle_positions", [row]).accepted == 1
            (ca if i % 2 else cb).flush()
        ca.flush()
        cb.flush()
        for who in ("a", "b"):
            assert ca.query.track("vehicle_positions", f"both-{who}").num_rows == 6, who
        assert ca.sql(count).column("n")[0].as_py() == before + 13
    # B acknowledges a row and stops before flushing it (a crash); A flushes more entries than B
    # has. B's next start replays its own log from its own mark: the row lands, once.
    row = {"vehicle_id": "crashed-b", "ts": "2026-11-24T10:00:00", "gps_lon": 116.4, "gps_lat": 39.9}
    crash = (
        "import os, sys; from citybase import CityBase; cb = CityBase.open(sys.argv[1]); "
        f"assert cb.ingest('vehicle_positions', [{row!r}]).accepted == 1; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash, str(b)], check=True, timeout=120)
    with CityBase.open(a) as ca:
        for i in range(5):
            ca.ingest("vehicle_positions", [{**row, "vehicle_id": "busy-a", "ts": f"2026-11-24T10:00:0{i}"}])
        ca.flush()
    with CityBase.open(b) as cb:
        assert cb.query.track("vehicle_positions", "crashed-b").num_rows == 1
        # Maintenance on the PostgreSQL catalog: merged, history forgotten, the files merged away
        # deleted; every row stays, and the shared folder holds just the files the catalog names.
        before = cb.sql(count).column("n")[0].as_py()
        track = cb.query.track("vehicle_positions", "busy-a")
        done = cb.maintain(timedelta(0))
        assert done.merged > 0 and done.expired > 0 and done.removed > 0
        assert cb.sql(count).column("n")[0].as_py() == before
        # The copy by object lives in the same catalog; tracks read it, and find the same rows.
        assert done.copied == before
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "vehicle_positions") is not None
        assert cb.query.track("vehicle_positions", "busy-a").equals(track) and track.num_rows == 5
        named = {shared / rel for _, rel in cb.lake.files_since(0)}
    assert set(shared.rglob("*.parquet")) == named
    assert audit(b / "ledger", lake_root=shared).ok


# Dask 2026.8 calls reset_index(inplace=True), which pandas 3.1 deprecates: Dask's to fix, not ours.
DASK_ON_PANDAS_3 = pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")


@DASK_ON_PANDAS_3
def test_dask_reads_the_lake_without_citybase(demo_city: tuple[Path, Path]) -> None:
    """The lake's tables are plain Parquet files: Dask reads them and counts what DuckDB counts."""
    dd = pytest.importorskip("dask.dataframe", reason="no Dask: pip install 'citybase[cluster]'")
    with CityBase.open(demo_city[0]) as cb:
        for name, col in (("vehicle_positions", "lon"), ("air_quality", "no2")):
            files = cb.lake.data_files(name)
            assert files and all(delete is None for _, delete in files)  # append-only: no delete files
            frame = dd.read_parquet([f for f, _ in files])
            ref = cb.sql(f"SELECT count(*) AS n, sum({col}) AS s FROM lake.{name}").to_pylist()[0]
            assert len(frame) == ref["n"] > 0
            assert float(frame[col].sum().compute()) == pytest.approx(ref["s"], rel=1e-9)


def test_plain_duckdb_reads_the_embedded_lake_as_the_docs_say(demo_city: tuple[Path, Path]) -> None:
    """docs/cluster.md's SQL, on DuckDB with only the DuckLake extension (loaded from its file
    here: `INSTALL` would download it)."""
    import duckdb

    from citybase.store.engine import _extension_file

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text(encoding="utf-8")
    (sql,) = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    statements = [x.strip() for x in sql.replace("demo-city/base", str(demo_city[0])).split(";") if x.strip()]
    assert statements[:2] == ["INSTALL ducklake", "LOAD ducklake"]
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute(f"LOAD '{_extension_file('duckdb_extension_ducklake', 'ducklake')}'")
    con.execute(statements[2])
    top = con.execute(statements[3]).fetchall()
    con.close()
    with CityBase.open(demo_city[0]) as cb:
        ref = cb.sql(
            "SELECT district, count(*) AS n FROM lake.vehicle_positions GROUP BY district"
        ).to_pylist()
    assert sorted(top) == sorted((r["district"], r["n"]) for r in ref) and sum(n for _, n in top) > 0


def test_a_bad_deployment_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "deployment.yaml").write_text("catalog: postgres:dbname=x\nwarehouse: oops\n")
    with pytest.raises(DeclarationError, match=r"deployment\.yaml"):
        Deployment.read(tmp_path)
    with pytest.raises(DeclarationError, match="data_path"):
        Deployment(catalog="postgres:dbname=x").write(tmp_path / "other")


@DASK_ON_PANDAS_3
def test_the_dask_example_in_the_docs_runs(demo_city: tuple[Path, Path]) -> None:
    pytest.importorskip("dask.dataframe", reason="no Dask: pip install 'citybase[cluster]'")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    exec(code.replace("demo-city/base", str(demo_city[0])), {})
