"""A dataset's copy sorted by object (store/by_object.py): built by maintenance, read by tracks.

Checked against the rows themselves: a track and every object's trips read through the copy (and
the rows inserted since its mark) equal those computed in pandas, before and after every
maintenance step; the copy holds each row once, in (day, object, time) order; forgetting history
never forces a whole rebuild.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from citybase import CityBase
from citybase.ledger import audit
from citybase.query import ReadScope
from citybase.store import by_object
from test_query import PINGS, T0, hav, make_pings, to_rows


def reference(df: pd.DataFrame, obj: str, start: object, end: object) -> list[int]:
    want = df[(df.obj == obj) & (df.t >= start) & (df.t < end)]
    return want.sort_values(["t", "lon", "lat"], kind="stable").rid.tolist()


def check_tracks(cb: CityBase, df: pd.DataFrame) -> None:
    """Every object's track over two windows, and one with a reader's scope, against pandas."""
    windows = ((T0, T0 + timedelta(days=3)), (T0 + timedelta(hours=20), T0 + timedelta(hours=26)))
    for obj in sorted(df.obj.unique()):
        for start, end in windows:
            got = cb.query.track("pings", obj, start, end)
            assert got.column("rid").to_pylist() == reference(df, obj, start, end), obj
    # Every object's trips (B7), read the same way: points and lengths against pandas.
    for start, end in windows:
        stats = cb.query.trajectories("pings", start, end)[0].to_pandas().set_index("obj")
        sub = df[(df.t >= start) & (df.t < end)].sort_values(["obj", "t", "lon", "lat"], kind="stable")
        assert stats.points.to_dict() == sub.groupby("obj").size().to_dict()
        for obj, g in sub.groupby("obj"):
            x, y = g.lon.to_numpy(), g.lat.to_numpy()
            assert stats.length_m[obj] == pytest.approx(hav(x[:-1], y[:-1], x[1:], y[1:]).sum(), rel=1e-9)
    scope = ReadScope(fields=["obj", "t", "lon", "lat", "rid"], row_filter="pm25 > 60")
    dirty = df[df.pm25 > 60]
    for obj in ("v01", "v07"):
        got = cb.query.track("pings", obj, T0, T0 + timedelta(days=3), scope=scope)
        assert got.column_names == ["obj", "t", "lon", "lat", "rid"]
        assert got.column("rid").to_pylist() == reference(dirty, obj, T0, T0 + timedelta(days=3))


def split(df: pd.DataFrame, k: int) -> list[pd.DataFrame]:
    return [df.iloc[ix] for ix in np.array_split(np.arange(len(df)), k)]


def copy_rows(cb: CityBase) -> pd.DataFrame:
    return cb.sql(f"SELECT obj, t, rid FROM {cb.lake.copy_table('pings')}").to_pandas()


@pytest.fixture
def pings() -> pd.DataFrame:
    return make_pings(np.random.default_rng(7), objects=12, per=400)


def test_tracks_read_the_copy_and_the_rows_since_its_mark(
    tmp_path: Path, pings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(by_object, "REBUILD_SHARE", 2.0)  # appends only, however many
    first, second = pings.iloc[: len(pings) // 2], pings.iloc[len(pings) // 2 :]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(first, lon="x", lat="y"))
        cb.flush()
        # No copy yet: tracks read the table.
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "pings") is None
        check_tracks(cb, first)

        done = cb.maintain()
        assert done.copied == len(first)
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "pings") is not None
        check_tracks(cb, first)

        # Rows pushed after the copy was made are read from the change feed until the next run.
        cb.ingest("pings", to_rows(second, lon="x", lat="y"))
        cb.flush()
        check_tracks(cb, pings)
        assert len(copy_rows(cb)) == len(first)

        # The next run adds only those rows; each row is in the copy once.
        assert cb.maintain().copied == len(second)
        assert cb.maintain().copied == 0
        rows = copy_rows(cb)
        assert sorted(rows.rid) == sorted(pings.rid)
        check_tracks(cb, pings)


def test_the_copy_is_sorted_by_day_object_and_time(tmp_path: Path) -> None:
    pings = make_pings(np.random.default_rng(8), objects=40, per=1500)  # several row groups a day
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        for part in split(pings.sample(frac=1, random_state=1), 4):  # four unsorted pushes
            cb.ingest("pings", to_rows(part, lon="x", lat="y"))
            cb.flush()
            cb.maintain()
        files = [f for f, _ in _copy_files(cb)]
    assert files
    for f in files:
        t = pq.read_table(f, columns=["obj", "t"]).to_pandas()
        keys = list(zip(t.t.dt.date, t.obj, t.t, strict=True))
        assert keys == sorted(keys), f"{f} is not in (day, object, time) order"
    # So each row group of a large file holds one day and a narrow range of objects (what lets a
    # track skip the others, and a day's trips the other days): the 40 objects of each day of the
    # merged file, in row groups that share an object at most where one ends and the next begins.
    meta = max((pq.ParquetFile(f).metadata for f in files), key=lambda m: m.num_rows)
    o, t = meta.schema.names.index("obj"), meta.schema.names.index("t")
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    days = {d.date() for g in groups for d in (g.column(t).statistics.min, g.column(t).statistics.max)}
    assert all(g.column(t).statistics.min.date() == g.column(t).statistics.max.date() for g in groups[1:-1])
    objects = [int(g.column(o).statistics.max[1:]) - int(g.column(o).statistics.min[1:]) + 1 for g in groups]
    assert len(objects) >= 3 and sum(objects) <= 40 * len(days) + 2 * len(objects), objects


def test_forgetting_history_keeps_the_copy_incremental(
    tmp_path: Path, pings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(by_object, "REBUILD_SHARE", 5.0)  # appends only, however many
    root = tmp_path / "base"
    parts = split(pings, 3)
    with CityBase.open(root) as cb:
        cb.declare(PINGS)
        for i, part in enumerate(parts):
            cb.ingest("pings", to_rows(part, lon="x", lat="y"))
            cb.flush()
            done = cb.maintain(timedelta(0))  # keep no history at all
            # The copy's change feed still starts where it left off: only the new rows are copied.
            assert done.copied == len(part), i
        check_tracks(cb, pings)
        assert sorted(copy_rows(cb).rid) == sorted(pings.rid)
    report = audit(root / "ledger", lake_root=root / "lake")
    assert report.ok, report.problems


def test_a_dataset_declared_anew_loses_its_copy(tmp_path: Path, pings: pd.DataFrame) -> None:
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(pings, lon="x", lat="y"))
        cb.flush()
        cb.maintain()
        cb.declare({**PINGS, "title": "pings, again"}, replace=True)
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "pings") is None
        assert cb.query.track("pings", "v01").num_rows == 0
        tables = cb.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").column(0)
        assert "pings-by-object" not in tables.to_pylist()
        # And builds it again, from the new table's rows only.
        cb.ingest("pings", to_rows(pings.iloc[:100], lon="x", lat="y"))
        cb.flush()
        assert cb.maintain().copied == 100
        check_tracks(cb, pings.iloc[:100])


def test_a_dataset_may_opt_out(tmp_path: Path, pings: pd.DataFrame) -> None:
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare({**PINGS, "copy_by_object": False})
        cb.ingest("pings", to_rows(pings, lon="x", lat="y"))
        cb.flush()
        assert cb.maintain().copied == 0
        tables = cb.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").column(0)
        assert "pings-by-object" not in tables.to_pylist()
        check_tracks(cb, pings)


def test_a_whole_build_sorts_slices_of_objects(
    tmp_path: Path, pings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(by_object, "SLICE_ROWS", 1000)
    nameless = pings.iloc[:7].assign(obj=None, rid=pings.rid.max() + 1 + np.arange(7))
    rows = pd.concat([pings, nameless], ignore_index=True)
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(rows, lon="x", lat="y"))
        cb.flush()
        assert cb.maintain().copied == len(rows)  # rows without an object too
        assert sorted(copy_rows(cb).rid) == sorted(rows.rid)
        check_tracks(cb, pings)
        # Each slice has files of its own: their object ranges do not overlap.
        files = ", ".join(repr(f) for f, _ in _copy_files(cb))
        spans = cb.sql(
            "SELECT filename, min(obj) AS lo, max(obj) AS hi "
            f"FROM read_parquet([{files}], filename = true) GROUP BY filename ORDER BY lo"
        ).to_pandas()
    assert len(spans) >= 5  # 4,807 rows in slices of about 1,000
    lo, hi = spans.lo.tolist(), spans.hi.tolist()
    assert all(h < n for h, n in zip(hi, lo[1:], strict=False)), spans


def _copy_files(cb: CityBase, *, building: bool = False) -> list[tuple[str, str | None]]:
    return cb.lake.con.execute(
        "SELECT data_file, delete_file FROM ducklake_list_files('lake', ?)",
        [cb.lake.copy_name("pings", building=building)],
    ).fetchall()


def test_history_forgotten_behind_the_copys_back(tmp_path: Path, pings: pd.DataFrame) -> None:
    """Snapshots expired by hand, past the one the copy is marked at: reads stay whole, and the
    next maintenance builds the copy again whole instead of missing rows."""
    first, second = split(pings, 2)
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(first, lon="x", lat="y"))
        cb.flush()
        cb.maintain()
        cb.ingest("pings", to_rows(second, lon="x", lat="y"))
        cb.flush()
        cb.sql("CALL ducklake_expire_snapshots('lake', older_than => now()::TIMESTAMPTZ)")
        check_tracks(cb, pings)
        assert cb.maintain().copied == len(pings)
        assert sorted(copy_rows(cb).rid) == sorted(pings.rid)
        check_tracks(cb, pings)


def _slices_failing_at_the_second(*_: object) -> list[str]:
    """In place of `by_object._slices`: a whole build whose first slice lands and second fails."""
    return ["WHERE obj < 'v05'", "WHERE no_such_column"]


def test_a_build_cut_short_is_not_read_and_starts_again(
    tmp_path: Path, pings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole build commits slice by slice; one that fails midway leaves no mark, so tracks
    read the table, and the next maintenance builds the copy again from the start."""
    real = by_object._slices
    monkeypatch.setattr(by_object, "_slices", _slices_failing_at_the_second)
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(pings, lon="x", lat="y"))
        cb.flush()
        with pytest.raises(duckdb.Error):
            cb.maintain()
        # The first slice landed in the build's own table, and is in the ledger.
        building = cb.sql(f"SELECT rid FROM {cb.lake.copy_table('pings', building=True)}")
        assert 0 < building.num_rows < len(pings)
        cb.ledger.integrate()
        facts = [json.loads(cb.ledger.entry(i))["data"] for i in range(cb.ledger.checkpoint().size)]
        listed = {f["path"] for d in facts for f in d.get("files", [])}
        lake = tmp_path / "base" / "lake"
        built = _copy_files(cb, building=True)
        assert built and {Path(f).relative_to(lake).as_posix() for f, _ in built} <= listed
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "pings") is None
        check_tracks(cb, pings)
        monkeypatch.setattr(by_object, "_slices", real)
        assert cb.maintain().copied == len(pings)
        assert sorted(copy_rows(cb).rid) == sorted(pings.rid)
        check_tracks(cb, pings)


def test_a_copy_outgrown_by_its_appends_is_built_again_beside_the_one_in_use(
    tmp_path: Path, pings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends span every object (each one more file a track opens): past REBUILD_SHARE of the
    last build, the next maintenance builds the copy whole, in a table of its own, while tracks
    keep reading the copy in use; a rebuild cut short leaves that copy in use."""
    base, more, late = pings.iloc[:3000], pings.iloc[3000:3400], pings.iloc[3400:]
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(PINGS)
        cb.ingest("pings", to_rows(base, lon="x", lat="y"))
        cb.flush()
        assert cb.maintain().copied == len(base)
        cb.ingest("pings", to_rows(more, lon="x", lat="y"))  # 13% of the build: appended
        cb.flush()
        assert cb.maintain().copied == len(more)
        cb.ingest("pings", to_rows(late, lon="x", lat="y"))
        cb.flush()
        # Past the share: the next maintenance builds again. Cut short, the copy in use serves.
        real = by_object._slices
        monkeypatch.setattr(by_object, "_slices", _slices_failing_at_the_second)
        with pytest.raises(duckdb.Error):
            cb.maintain()
        with cb.lake.cursor() as cur:
            assert cb.query.copies.relation(cur, "pings") is not None
        assert len(copy_rows(cb)) == len(base) + len(more)
        check_tracks(cb, pings)
        # Whole, it takes the copy's place: every row once, the build recorded, appends again next.
        monkeypatch.setattr(by_object, "_slices", real)
        assert cb.maintain().copied == len(pings)
        assert sorted(copy_rows(cb).rid) == sorted(pings.rid)
        assert cb.sql("SELECT built FROM lake.citybase_copies").column(0).to_pylist() == [len(pings)]
        tables = cb.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").column(0)
        assert cb.lake.copy_name("pings", building=True) not in tables.to_pylist()
        check_tracks(cb, pings)
        extra = make_pings(np.random.default_rng(9), objects=3, per=50).assign(rid=lambda d: d.rid + 10**6)
        cb.ingest("pings", to_rows(extra, lon="x", lat="y"))
        cb.flush()
        assert cb.maintain().copied == len(extra)
        check_tracks(cb, pd.concat([pings, extra]))
