"""The console's map endpoints against the query engine: each layer equals a brute-force answer,
and what a department sees follows its grants."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from citybase import CityBase
from citybase.console.geo import tile_bounds
from citybase.console.index import State, map_index
from citybase.console.testing import console_app, departments_and_keys, load_city
from citybase.query.aggregate import h3_parent_sql


class Console:
    def __init__(self, cb: CityBase, keys: dict[str, str], app: FastAPI, client: TestClient) -> None:
        self.cb, self.keys, self.app, self.client = cb, keys, app, client

    def get(self, path: str, who: str | None = "city", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return self.client.get(path, headers=headers, params=params)

    def json(self, path: str, who: str = "city", **params: Any) -> Any:
        r = self.get(path, who, **params)
        assert r.status_code == 200, r.text
        return r.json()

    def count(self, sql: str) -> int:
        return int(self.cb.sql(sql).column(0)[0].as_py())


@pytest.fixture(scope="module")
def console(demo_city: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console") / "base"
    load_city(demo_city[1], root)
    cb = CityBase.open(root)
    keys = departments_and_keys(cb)
    app = console_app(cb, background=False)
    client = TestClient(app)
    with client:
        yield Console(cb, keys, app, client)
    cb.close()


def window(c: Console) -> tuple[datetime, datetime]:
    """A day of the hotline's data, ending at its last complaint."""
    end = c.cb.sql("SELECT max(reported_at) FROM lake.hotline_events").column(0)[0].as_py()
    return end - timedelta(days=1), end + timedelta(seconds=1)


def test_the_page_and_its_assets_are_served_without_a_key(console: Console) -> None:
    page = console.get("/console/", None)
    assert page.status_code == 200 and '<div id="map">' in page.text
    js = console.get("/console/vendor/maplibre-gl.js", None)
    assert js.status_code == 200 and len(js.content) > 500_000 and b"maplibre" in js.content[:400].lower()
    assert console.get("/console/vendor/maplibre-gl.css", None).status_code == 200
    for name in ("app.js", "map.js", "ops.js", "console.css"):
        assert console.get(f"/console/static/{name}", None).status_code == 200, name
    assert console.get("/console/static/..%2Froutes.py", None).status_code == 404
    assert console.get("/console/vendor/ipywidget.js", None).status_code == 404
    # Nothing in the page comes from another origin.
    assert "http://" not in page.text and "https://" not in page.text


def test_every_data_endpoint_needs_a_key(console: Console) -> None:
    paths = [p for p in console.app.openapi()["paths"] if p.startswith("/api/v1/map")]
    assert len(paths) >= 9
    for p in paths:
        url = p.format(level="district", dataset="hotline_events", code="x", z=0, x=0, y=0)
        assert console.get(url, None).status_code == 401, p


def test_area_layers_are_the_city_model(console: Console) -> None:
    city = console.cb.city
    assert city is not None
    for level, layer in city.layers.items():
        fc = console.json(f"/api/v1/map/areas/{level.value}", zoom=14)
        assert sorted(f["properties"]["code"] for f in fc["features"]) == sorted(layer.codes.tolist())
    box = (116.38, 39.88, 116.42, 39.92)
    fc = console.json("/api/v1/map/areas/building", zoom=16, bbox=",".join(map(str, box)))
    layer = city.layers[next(lv for lv in city.layers if lv.value == "building")]
    brute = int(shapely.intersects(shapely.box(*box).envelope, shapely.envelope(layer.geoms)).sum())
    assert len(fc["features"]) == brute > 0
    assert console.get("/api/v1/map/areas/county").status_code == 400


def test_rows_in_a_box_and_window_equal_a_brute_force_count(console: Console) -> None:
    t0, t1 = window(console)
    box = (116.30, 39.85, 116.45, 39.95)
    fc = console.json(
        "/api/v1/map/rows/hotline_events",
        bbox=",".join(map(str, box)),
        start=t0.isoformat(),
        end=t1.isoformat(),
    )
    brute = console.count(
        f"SELECT count(*) FROM lake.hotline_events WHERE lon BETWEEN {box[0]} AND {box[2]} "
        f"AND lat BETWEEN {box[1]} AND {box[3]} AND reported_at >= '{t0}' AND reported_at < '{t1}'"
    )
    assert len(fc["features"]) == brute > 0
    assert all(f["geometry"]["type"] == "Point" for f in fc["features"])
    roads = console.json("/api/v1/map/rows/roads", bbox="-180,-90,180,90", zoom=14, limit=50000)
    assert len(roads["features"]) == console.count("SELECT count(*) FROM lake.roads")
    assert {f["geometry"]["type"] for f in roads["features"]} <= {"LineString", "MultiLineString"}


def test_the_heat_map_counts_every_row_of_the_window(console: Console) -> None:
    t0, t1 = window(console)
    fc = console.json("/api/v1/map/heat/hotline_events", start=t0.isoformat(), end=t1.isoformat())
    brute = console.count(
        f"SELECT count(*) FROM lake.hotline_events WHERE h3 IS NOT NULL "
        f"AND reported_at >= '{t0}' AND reported_at < '{t1}'"
    )
    assert sum(f["properties"]["count"] for f in fc["features"]) == brute > 0
    assert max(f["properties"]["weight"] for f in fc["features"]) == 1.0
    short = console.json(
        "/api/v1/map/heat/hotline_events", start=(t1 - timedelta(hours=2)).isoformat(), end=t1.isoformat()
    )
    assert sum(f["properties"]["count"] for f in short["features"]) < brute


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.mark.parametrize("z", [10, 13, 15])
def test_a_vector_tile_holds_the_points_of_its_box(console: Console, z: int) -> None:
    lon, lat = (
        console.cb.sql("SELECT lon, lat FROM lake.vehicle_positions ORDER BY ts LIMIT 1")
        .to_pylist()[0]
        .values()
    )
    x, y = _tile_of(lon, lat, z)
    r = console.get(f"/api/v1/map/tiles/vehicle_positions/{z}/{x}/{y}.pbf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    x0, y0, x1, y1 = tile_bounds(z, x, y)
    brute = console.count(
        f"SELECT count(*) FROM lake.vehicle_positions "
        f"WHERE lon >= {x0} AND lon < {x1} AND lat >= {y0} AND lat < {y1}"
    )
    assert int(r.headers["x-points"]) == brute > 0
    assert 0 < int(r.headers["x-features"]) <= brute
    assert len(r.content) > 0
    assert console.get("/api/v1/map/tiles/vehicle_positions/3/9/0.pbf").status_code == 400


def test_sensors_show_each_stations_latest_reading(console: Console) -> None:
    at = console.cb.sql("SELECT max(ts) FROM lake.air_quality").column(0)[0].as_py()
    fc = console.json("/api/v1/map/sensors/air_quality", at=at.isoformat(), lookback=6)
    latest = console.cb.sql(
        f"SELECT station_id, pm25 FROM lake.air_quality WHERE ts >= TIMESTAMP '{at}' - INTERVAL 6 HOUR "
        f"AND ts <= TIMESTAMP '{at}' QUALIFY row_number() OVER (PARTITION BY station_id ORDER BY ts DESC) = 1"
    ).to_pylist()
    got = {f["properties"]["object"]: f["properties"]["value"] for f in fc["features"]}
    assert got == {r["station_id"]: r["pm25"] for r in latest} and got
    assert fc["value_field"] == "pm25"
    stations = {
        r["station_id"]: (r["lon"], r["lat"])
        for r in console.cb.sql("SELECT station_id, lon, lat FROM lake.air_quality_stations").to_pylist()
    }
    for f in fc["features"]:
        assert tuple(f["geometry"]["coordinates"]) == pytest.approx(stations[f["properties"]["object"]])


def test_vehicles_are_at_their_latest_position(console: Console) -> None:
    t = console.cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py() - timedelta(
        minutes=5
    )
    fc = console.json("/api/v1/map/vehicles/vehicle_positions", at=t.isoformat(), window=300)
    rows = console.cb.sql(
        f"SELECT vehicle_id, lon, lat FROM lake.vehicle_positions "
        f"WHERE ts >= TIMESTAMP '{t}' - INTERVAL 300 SECOND AND ts <= TIMESTAMP '{t}' "
        "QUALIFY row_number() OVER (PARTITION BY vehicle_id ORDER BY ts DESC) = 1"
    ).to_pylist()
    got = {f["properties"]["object"]: tuple(f["geometry"]["coordinates"]) for f in fc["features"]}
    assert got == {r["vehicle_id"]: (r["lon"], r["lat"]) for r in rows} and got


def test_a_place_report_counts_every_visible_dataset(console: Console) -> None:
    code = console.cb.sql("SELECT code FROM lake.place_district ORDER BY code LIMIT 1").column(0)[0].as_py()
    r = console.json(f"/api/v1/map/place/district/{code}", limit=3)
    assert r["place"]["code"] == code and r["geometry"]["type"] in ("Polygon", "MultiPolygon")
    rows = {d["dataset"]: d["rows"] for d in r["datasets"]}
    assert rows["hotline_events"] == console.count(
        f"SELECT count(*) FROM lake.hotline_events WHERE district = '{code}'"
    )
    assert all(len(d["sample"]) <= 3 for d in r["datasets"])
    assert r["hidden"] == []
    assert console.get("/api/v1/map/place/district/nowhere").status_code == 404


def test_a_department_sees_what_its_grants_allow(console: Console) -> None:
    # urban-management owns nothing and holds no grant: the data layers are closed to it.
    assert console.get("/api/v1/map/heat/hotline_events", "urban-management").status_code == 403
    assert (
        console.get("/api/v1/map/tiles/vehicle_positions/10/843/388.pbf", "urban-management").status_code
        == 403
    )
    cfg = console.json("/api/v1/map/config", "urban-management")
    assert cfg["department"] == "urban-management" and not cfg["admin"]
    assert not any(d["visible"] for d in cfg["datasets"])
    code = console.cb.sql("SELECT code FROM lake.place_district ORDER BY code LIMIT 1").column(0)[0].as_py()
    place = console.json(f"/api/v1/map/place/district/{code}", "urban-management")
    assert place["datasets"] == [] and "hotline_events" in place["hidden"]
    # The provider sees its own data.
    assert console.get("/api/v1/map/heat/hotline_events", "citizen-service").status_code == 200
    # A grant opens the dataset to it, through its scope.
    c = console.client
    um = {"Authorization": f"Bearer {console.keys['urban-management']}"}
    req = c.post("/api/v1/access/requests", headers=um, json={"dataset": "hotline_events", "purpose": "ops"})
    assert req.status_code == 201, req.text
    cs = {"Authorization": f"Bearer {console.keys['citizen-service']}"}
    ok = c.post(
        f"/api/v1/access/requests/{req.json()['id']}/decision", headers=cs, json={"action": "approve"}
    )
    assert ok.status_code == 200, ok.text
    assert console.get("/api/v1/map/heat/hotline_events", "urban-management").status_code == 200
    place = console.json(f"/api/v1/map/place/district/{code}", "urban-management")
    assert [d["dataset"] for d in place["datasets"]] == ["hotline_events"]


def test_the_figures_match_the_lake(console: Console) -> None:
    f = console.json("/api/v1/map/figures")
    assert f["datasets"] == len(console.cb.datasets)
    total = sum(console.count(f'SELECT count(*) FROM lake."{n}"') for n in console.cb.datasets)
    assert f["total_records"] == total
    assert f["records_today"] == f["new_records_per_day"][-1]["count"] > 0  # loaded today
    assert f["systems_connected"] >= len({s.system for s in console.cb.datasets.values()})
    assert f["ingest_lag_s"] >= 0 and f["pending_rows"] == 0


def _last_position(cb: CityBase) -> tuple[float, float]:
    row = cb.sql("SELECT lon, lat FROM lake.vehicle_positions ORDER BY ts DESC LIMIT 1").to_pylist()[0]
    return row["lon"], row["lat"]


def _index(c: Console, dataset: str) -> State:
    """The app's map index of `dataset`, once built (the router's lifespan starts the build)."""
    state = map_index(c.app.state).get(dataset, wait=60, fresh=True)
    assert state is not None, map_index(c.app.state).status()
    return state


def _heat_brute(c: Console, dataset: str, tf: str, t0: datetime, t1: datetime, res: int) -> dict[str, int]:
    rows = c.cb.sql(
        f"SELECT lower(hex({h3_parent_sql('h3', res)})) AS cell, count(*) AS n FROM lake.{dataset} "
        f"WHERE h3 IS NOT NULL AND {tf} >= '{t0}' AND {tf} < '{t1}' GROUP BY ALL"
    ).to_pylist()
    return {r["cell"]: r["n"] for r in rows}


@pytest.mark.parametrize("res", [8, 6])
def test_the_index_heat_map_equals_a_brute_force_count_per_cell(console: Console, res: int) -> None:
    from citybase.console import layers
    from citybase.query.scope import OPEN

    cb = console.cb
    index = _index(console, "vehicle_positions")
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    # Windows on and off hour boundaries, one longer than the data.
    for t0, t_end in (
        (t1 - timedelta(minutes=10), t1),
        (t1 - timedelta(hours=3, seconds=17), t1 + timedelta(microseconds=1)),
        (t1.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1), t1.replace(minute=0, second=0)),
        (t1 - timedelta(days=40), t1 + timedelta(days=1)),
    ):
        fast = layers.heat(cb, "vehicle_positions", OPEN, t0, t_end, res, index)
        got = {f["properties"]["cell"]: f["properties"]["count"] for f in fast["features"]}
        assert got == _heat_brute(console, "vehicle_positions", "ts", t0, t_end, res), (t0, t_end)
        assert fast == layers.heat(cb, "vehicle_positions", OPEN, t0, t_end, res)  # the lake's answer
        counts = layers.heat_counts(cb, "vehicle_positions", OPEN, t0, t_end, res, index)
        assert json.loads(layers.heat_text(*counts)) == fast  # what the route sends
    # Through HTTP, for the operator: the same counts.
    t0 = t1 - timedelta(hours=2)
    fc = console.json("/api/v1/map/heat/vehicle_positions", start=t0.isoformat(), end=t1.isoformat())
    got = {f["properties"]["cell"]: f["properties"]["count"] for f in fc["features"]}
    assert got == _heat_brute(console, "vehicle_positions", "ts", t0, t1, 8) != {}


def test_index_tiles_equal_the_lakes_and_a_brute_force_count(console: Console) -> None:
    from citybase.console import tiles
    from citybase.query.scope import OPEN

    cb = console.cb
    index = _index(console, "vehicle_positions")
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    t0 = t1 - timedelta(minutes=30)
    lon, lat = _last_position(cb)
    for z in (11, 13, 15):
        x, y = _tile_of(lon, lat, z)
        fast = tiles.tile(cb, "vehicle_positions", OPEN, z, x, y, t0, t1, index)
        lake = tiles.tile(cb, "vehicle_positions", OPEN, z, x, y, t0, t1)
        # The same points in the same bins, whoever encodes them (NumPy here, ST_AsMVT there).
        assert tiles.decode(fast[0]) == tiles.decode(lake[0]) and fast[1:] == lake[1:]
        x0, y0, x1, y1 = tile_bounds(z, x, y)
        assert fast[2] == console.count(
            f"SELECT count(*) FROM lake.vehicle_positions WHERE lon >= {x0} AND lon < {x1} "
            f"AND lat >= {y0} AND lat < {y1} AND ts >= '{t0}' AND ts < '{t1}'"
        )
        assert fast[2] > 0
        r = console.get(
            f"/api/v1/map/tiles/vehicle_positions/{z}/{x}/{y}.pbf", start=t0.isoformat(), end=t1.isoformat()
        )
        assert r.status_code == 200 and r.content == fast[0]


def test_index_vehicles_equal_the_lakes(console: Console) -> None:
    from citybase.console import layers
    from citybase.query.scope import OPEN

    cb = console.cb
    index = _index(console, "vehicle_positions")
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    for back in (timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=2)):
        for at in (t1, t1 - timedelta(minutes=7, seconds=3)):
            a = layers.vehicles(cb, "vehicle_positions", OPEN, at, back, index)
            b = layers.vehicles(cb, "vehicle_positions", OPEN, at, back)
            assert [(f["geometry"], f["properties"]["object"]) for f in a["features"]] == [
                (f["geometry"], f["properties"]["object"]) for f in b["features"]
            ]
            times = [f["properties"]["ts"] for f in b["features"]]
            assert [f["properties"]["ts"] for f in a["features"]] == times
    assert layers.vehicles(cb, "vehicle_positions", OPEN, t1, timedelta(minutes=5), index)["features"]


def test_a_scoped_reader_never_reads_the_index(console: Console) -> None:
    from citybase.console import layers, tiles
    from citybase.query.scope import ReadScope

    cb = console.cb
    index = _index(console, "vehicle_positions")
    scoped = ReadScope(row_filter="vehicle_type = 'bus'")
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    t0 = t1 - timedelta(hours=6)
    hot = layers.heat(cb, "vehicle_positions", scoped, t0, t1, 8, index)
    when = f"ts >= '{t0}' AND ts < '{t1}'"
    bus = console.count(f"SELECT count(*) FROM lake.vehicle_positions WHERE vehicle_type = 'bus' AND {when}")
    assert sum(f["properties"]["count"] for f in hot["features"]) == bus
    assert bus < console.count(f"SELECT count(*) FROM lake.vehicle_positions WHERE {when}")
    lon, lat = _last_position(cb)
    x, y = _tile_of(lon, lat, 11)
    _, _, points = tiles.tile(cb, "vehicle_positions", scoped, 11, x, y, t0, t1, index)
    x0, y0, x1, y1 = tile_bounds(11, x, y)
    assert points == console.count(
        f"SELECT count(*) FROM lake.vehicle_positions WHERE vehicle_type = 'bus' "
        f"AND lon >= {x0} AND lon < {x1} AND lat >= {y0} AND lat < {y1} AND {when}"
    )
    moving = layers.vehicles(cb, "vehicle_positions", scoped, t1, timedelta(hours=1), index)
    assert {f["properties"]["vehicle_type"] for f in moving["features"]} <= {"bus"}


def test_the_index_follows_new_rows_and_is_kept_on_disk(console: Console) -> None:
    """Rows ingested after the build are in the next answer; a restart maps the index from disk."""
    from citybase.console import layers
    from citybase.console.index import MapIndex
    from citybase.query.scope import OPEN

    cb = console.cb
    before = _index(console, "vehicle_positions")
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    row = cb.sql("SELECT * FROM lake.vehicle_positions ORDER BY ts DESC LIMIT 1").to_pylist()[0]
    new = {
        "vehicle_id": "console-test-vehicle",
        "vehicle_type": "bus",
        "ts": (t1 + timedelta(minutes=1)).isoformat() + "+00:00",  # stored as UTC
    }
    new.update({"gps_lon": row["lon"], "gps_lat": row["lat"], "speed": 1.0, "heading": 0.0, "plate": "T-1"})
    cb.ingest("vehicle_positions", [new])
    cb.flush()
    t0, t_end = t1 - timedelta(hours=1), t1 + timedelta(minutes=2)
    # The background thread notices the lake moved and reads the new row (a request never waits).
    deadline = time.monotonic() + 30
    while (now := map_index(console.app.state).get("vehicle_positions")) is None or now.rows == before.rows:
        assert time.monotonic() < deadline, "the index never took the new row"
        time.sleep(0.05)
    after = _index(console, "vehicle_positions")
    assert after.rows == now.rows == before.rows + 1
    got = layers.heat(cb, "vehicle_positions", OPEN, t0, t_end, 8, after)
    assert {f["properties"]["cell"]: f["properties"]["count"] for f in got["features"]} == _heat_brute(
        console, "vehicle_positions", "ts", t0, t_end, 8
    )
    moving = layers.vehicles(cb, "vehicle_positions", OPEN, t_end, timedelta(minutes=5), after)
    assert "console-test-vehicle" in {f["properties"]["object"] for f in moving["features"]}
    # A second app on the same platform (a restart) maps the kept index and reads only new rows.
    ix = map_index(console.app.state)
    ds = ix._sets["vehicle_positions"]
    ds.saved = -1e9  # (written at most every PERSIST_EVERY s)
    ds.compact()
    again = MapIndex(cb, ix.root)
    again.start()
    try:
        state = again.get("vehicle_positions", wait=60, fresh=True)
        assert state is not None and again.status()["vehicle_positions"]["on_disk"]
        assert state.rows == after.rows
        assert layers.heat(cb, "vehicle_positions", OPEN, t0, t_end, 8, state) == got
    finally:
        again.stop()


def test_index_windows_and_merges_equal_a_brute_force_mask() -> None:
    """A part's window (hour slices, edge masks), `by_hour` and `merge` (appended rows, earlier
    and later than the sorted ones), against a plain mask over the same rows."""
    import numpy as np

    from citybase.console.index import HOUR, Part, State, by_hour, merge

    rng = np.random.default_rng(7)

    def part(n: int, lo: int, hi: int) -> Part:
        ts = rng.integers(lo, hi, n)
        return Part(
            ts, rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.integers(0, 5, n).astype(np.int32), None
        )

    base = 1_741_000_000_000_000 // HOUR * HOUR
    day = 24 * HOUR
    main = by_hour(part(5000, base, base + 3 * day))
    parts = [
        [main],
        [main, part(300, base + 2 * day, base + 4 * day)],  # recent rows: only the tail is sorted again
        [main, part(200, base - day, base + day)],  # rows before the first hour: sorted again whole
        [main, part(100, base + 10 * day, base + 11 * day)],  # after a gap of empty hours
    ]
    windows = [(None, None), (base + 5, base + day - 3), (base, base + 2 * HOUR), (None, base + 7 * HOUR + 1)]
    windows += [(base + day + HOUR // 2, None), (base - 2 * day, base + 20 * day), (base + 30 * day, None)]
    for ps in parts:
        whole = np.concatenate([p.ts for p in ps])
        merged = merge(list(ps))
        assert merged.off is not None and merged.off[-1] == merged.rows == len(whole)
        hours = merged.ts // HOUR - merged.hour0
        assert (np.diff(hours) >= 0).all()  # grouped by hour
        assert (merged.off[hours] <= np.arange(merged.rows)).all()
        assert (np.arange(merged.rows) < merged.off[hours + 1]).all()
        assert State((merged,), np.zeros(0, np.uint64), [], 1).span == (int(whole.min()), int(whole.max()))
        for t0, t1 in windows:
            want = np.ones(len(whole), bool)
            if t0 is not None:
                want &= whole >= t0
            if t1 is not None:
                want &= whole < t1
            for p in (merged, *ps):
                sl, mask = p.window(t0, t1)
                got = p.ts[sl] if mask is None else p.ts[sl][mask]
                if p is merged:
                    assert sorted(got.tolist()) == sorted(whole[want].tolist()), (t0, t1)
            cells8 = np.array([0, *(np.arange(1, 5, dtype=np.uint64) | np.uint64(8 << 52))], np.uint64)
            counts = State(tuple(ps), cells8, [], 1).heat(t0, t1, 8)
            codes = np.concatenate([p.cell for p in ps])
            brute = np.bincount(codes[want & (codes > 0)], minlength=5)  # code 0: no cell
            assert counts[1].tolist() == [int(c) for c in brute if c > 0]
            assert counts[0].tolist() == [int(c) for c, k in zip(cells8, brute, strict=True) if k > 0]
