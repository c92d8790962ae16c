"""The fast paths of a bulk load give what the plain paths give: the typed CSV read and its fall back
to strings, the whole-column casts, the H3 cells computed in parts; and a load's files are sorted."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from citybase import CityBase
from citybase.gateway import conform as conform_mod
from citybase.gateway.conform import Findings, coerce, conform
from citybase.gateway.load import _with_types
from citybase.gateway.readers import delimited
from citybase.gateway.readers.base import ReadOptions, reader_for
from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldSpec
from citybase.places import city as city_mod
from citybase.places.city import City, Layer, h3_cells

GPS = {
    "name": "gps",
    "department": "transport",
    "system": "fleet-gps",
    "kind": "tracks",
    "time_field": "ts",
    "object_field": "object_id",
    "partition": "day",
    "geometry": {"lon": "lon", "lat": "lat"},
    "fields": [
        {"name": "object_id", "type": "int"},
        {"name": "ts", "type": "timestamp"},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
        {"name": "speed", "type": "float", "min": 0},
        {"name": "note"},
    ],
}
HEADER = "object_id,ts,lon,lat,speed,note"


def clean_rows(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 3, 1)
    out = []
    for i in range(n):
        ts = t0 + timedelta(
            seconds=int(rng.integers(0, 3 * 86_400)), microseconds=int(rng.integers(0, 10**6))
        )
        lon, lat = 116.2 + 0.4 * rng.random(), 39.8 + 0.3 * rng.random()
        out.append(f"{i},{ts:%Y-%m-%d %H:%M:%S.%f},{lon!r},{lat!r},{rng.random() * 20:.3f},n{i}")
    return out


def break_row(rows: list[str], i: int, column: int, value: str) -> None:
    parts = rows[i].split(",")
    parts[column] = value
    rows[i] = ",".join(parts)


# Each case: edits to a clean file, most of them late in it (after several reader blocks), and
# whether the typed pass stands. An edit is (row, column, value), or (row, None, line) to insert.
Edit = tuple[int, int | None, str]
CASES: dict[str, tuple[list[Edit], bool]] = {
    "clean": ([], True),
    "blank floats and a quoted one": ([(5, 4, ""), (2900, 4, '""')], True),
    "a padded float": ([(2500, 3, " 39.9 ")], True),  # pyarrow trims numbers, as the cast path does
    "a word in a float column": ([(2800, 2, "east")], False),
    "NA in a float column": ([(2999, 4, "NA")], False),
    "spaces only": ([(2700, 4, "   ")], False),
    "a time with an offset": ([(2600, 1, "2025-03-02T08:00:00+08:00")], False),
    "a time that is not one": ([(2650, 1, "yesterday")], False),
    "a negative speed and a lon outside the world": ([(2100, 4, "-3"), (2200, 2, "200")], True),
    "a ragged row": ([(2750, None, "9999,2025-03-01 00:00:00,116.3")], False),
    "a blank line and a multi-line note": ([(2400, None, ""), (2450, 5, '"two\nlines"')], True),
}


def write_case(tmp_path: Path, name: str) -> Path:
    rows = clean_rows(3_000)
    for row, column, value in CASES[name][0]:
        if column is None:
            rows.insert(row, value)
        else:
            break_row(rows, row, column, value)
    path = tmp_path / "points.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def conformed(path: Path, spec: DatasetSpec, options: ReadOptions) -> tuple[pa.Table, pa.Table, list[str]]:
    goods, quarantines, types = [], [], []
    for rb in reader_for(path).read(path, options):
        types.append(str(rb.schema.field("lon").type))
        c = conform(spec, pa.Table.from_batches([rb]), tz="Asia/Shanghai", source=str(path), batch="b")
        goods.append(c.good)
        quarantines.append(c.quarantine.select(["line", "field", "value", "reason"]))
    return pa.concat_tables(goods), pa.concat_tables(quarantines), types


@pytest.mark.parametrize("case", list(CASES))
def test_typed_csv_read_gives_what_the_string_read_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setattr(delimited, "_BLOCK", 4_096)  # many pyarrow blocks: the change comes late
    path = write_case(tmp_path, case)
    spec = DatasetSpec.model_validate(GPS)
    plain = ReadOptions(batch_rows=700)
    good_s, q_s, types_s = conformed(path, spec, plain)
    good_t, q_t, types_t = conformed(path, spec, _with_types(spec, plain))
    assert set(types_s) == {"string"}
    # The typed pass stands for the whole file, or hands over to strings part way.
    stands = CASES[case][1]
    assert types_t[0] == "double"
    assert (types_t[-1] == "double") is stands, types_t
    assert good_t.equals(good_s)
    order = [("line", "ascending"), ("field", "ascending")]
    assert q_t.sort_by(order).equals(q_s.sort_by(order))
    assert good_s.num_rows + len(set(q_s.column("line").to_pylist())) == 3_000 + (case == "a ragged row")


def test_the_line_of_a_row_after_the_hand_over_is_its_line_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delimited, "_BLOCK", 4_096)
    rows = clean_rows(2_000)
    break_row(rows, 1_500, 2, "east")
    rows.insert(100, "")  # line numbers count blank lines and the lines inside quoted values
    break_row(rows, 200, 5, '"a\nb\nc"')
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    spec = DatasetSpec.model_validate(GPS)
    good, q, _ = conformed(path, spec, _with_types(spec, ReadOptions(batch_rows=300)))
    # Brute force: the physical line each record starts on, counted by hand.
    starts, line = {}, 2
    for r in rows:
        if r:
            starts[int(r.split(",")[0])] = line
        line += 1 + r.count("\n")
    got = dict(zip(good.column("object_id").to_pylist(), good.column("_line").to_pylist(), strict=True))
    assert got == {k: v for k, v in starts.items() if k != 1_500}
    # The unreadable lon is two findings: not a number, hence no location.
    assert q.column("line").to_pylist() == [starts[1_500]] * 2
    assert sorted(q.column("reason").to_pylist()) == ["no location", "not a number (float)"]


def test_a_csv_loads_once_with_its_bad_rows_quarantined_at_their_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delimited, "_BLOCK", 4_096)
    rows = clean_rows(3_000)
    break_row(rows, 2_900, 3, "north")
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    with CityBase.open(tmp_path / "base") as cb:
        cb.declare(GPS)
        res = cb.load("gps", path)
        assert (res.read, res.added, res.quarantined) == (3_000, 2_999, 1)
        q = cb.quarantine("gps")
        assert sorted(q.select(["line", "field", "value", "reason"]).to_pylist(), key=str) == [
            {"line": 2_902, "field": "lat", "value": "north", "reason": "not a number (float)"},
            {"line": 2_902, "field": "lon", "value": None, "reason": "no location"},
        ]
        stored = cb.sql("SELECT object_id, lon, _line FROM lake.gps ORDER BY object_id")
        want = [(i, float(r.split(",")[2]), i + 2) for i, r in enumerate(rows) if i != 2_900]
        assert (
            list(zip(*(stored.column(c).to_pylist() for c in ("object_id", "lon", "_line")), strict=True))
            == want
        )
        again = cb.load("gps", path)
        assert again.skipped and again.added == 0
        assert cb.sql("SELECT count(*) AS n FROM lake.gps").column("n").to_pylist() == [2_999]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_column_casts_give_what_the_value_by_value_path_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    pool = [
        "1",
        "2.5",
        "-3",
        "1e3",
        "nan",
        "",
        " 4",
        "x",
        "7 ",
        None,
        "0x10",
        "2025-01-02 03:04:05",
        "2025-01-02",
    ]
    for ftype, fmin in (("float", 0.0), ("int", None), ("timestamp", None)):
        f = FieldSpec.model_validate({"name": "v", "type": ftype, "min": fmin})
        for clean in (True, False):
            choice = pool[:4] if ftype != "timestamp" else pool[-2:]
            if not clean:
                choice = pool
            vals = [choice[i] for i in rng.integers(0, len(choice), 200)]
            arr = pa.array(vals, pa.string())
            fast, slow = Findings(), Findings()
            got = coerce(arr, f, "Asia/Shanghai", fast)
            monkeypatch.setattr(conform_mod, "_as_given", lambda *a: None)
            want = coerce(arr, f, "Asia/Shanghai", slow)
            monkeypatch.undo()
            assert got.equals(want), (ftype, clean)
            assert [r.tolist() for r in fast.rows] == [r.tolist() for r in slow.rows]
            assert fast.reasons == slow.reasons and fast.values == slow.values


def test_h3_cells_in_parts_match_h3_point_by_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(city_mod, "_H3_PART", 100)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    rng = np.random.default_rng(5)
    lon, lat = rng.uniform(-180, 180, 1_001), rng.uniform(-90, 90, 1_001)
    lon[[3, 500]] = np.nan
    lat[7] = 91.0
    got = h3_cells(lon, lat, 9).to_pylist()
    want = [
        None
        if not (np.isfinite(x) and np.isfinite(y) and abs(y) <= 90)
        else h3.str_to_int(h3.latlng_to_cell(y, x, 9))
        for x, y in zip(lon, lat, strict=True)
    ]
    assert got == want


def test_a_load_writes_each_partition_file_in_cell_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 100_000
    t0 = np.datetime64("2025-03-01T00:00:00", "us")
    table = pa.table(
        {
            "object_id": np.arange(n),
            "ts": pa.array(t0 + rng.integers(0, 30 * 86_400 * 10**6, n).astype("timedelta64[us]")),
            "lon": 116.2 + 0.4 * rng.random(n),
            "lat": 39.8 + 0.3 * rng.random(n),
            "speed": rng.random(n),
            "note": pa.array([f"n{i}" for i in range(n)]),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    districts = [shapely.box(116.2, 39.8, 116.4, 40.1), shapely.box(116.4, 39.8, 116.6, 40.1)]
    layer = Layer(
        Level.district,
        np.array(["W", "E"], dtype=object),
        np.array(["w", "e"], dtype=object),
        np.array([None, None], dtype=object),
        np.array(districts, dtype=object),
    )
    with CityBase.open(tmp_path / "base") as cb:
        cb.setup_city(City("t", "UTC", 12, {Level.district: layer}))
        cb.declare(GPS)
        assert cb.load("gps", path).added == n
        files = [f for f, _ in cb.lake.data_files("gps")]
        assert (
            len(files) == 30
        )  # one per day (many partitions: sorted by cell alone, DuckDB interleaved them)
        for f in files:
            cells = pq.read_table(f, columns=["h3"]).column("h3").to_numpy().astype(np.int64)
            # DuckDB's partitioned write keeps the input order but for a rare straggling vector.
            assert int((np.diff(cells) < 0).sum()) <= 1, f
        got = cb.sql("SELECT district, count(*) AS n FROM lake.gps GROUP BY 1 ORDER BY 1")
        lon = table.column("lon").to_numpy()
        assert got.column("n").to_pylist() == [int((lon > 116.4).sum()), int((lon <= 116.4).sum())]
