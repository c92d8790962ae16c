"""The console's map endpoints against the query engine: each layer equals a brute-force answer,
and what a department sees follows its grants."""

from __future__ import annotations

import math
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
from citybase.console.testing import console_app, departments_and_keys, load_city


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


def test_the_maps_time_sorted_copy_answers_as_the_lake_does(console: Console) -> None:
    import time as _time

    from citybase.console import layers, tiles
    from citybase.console.cache import PointCache
    from citybase.query.scope import OPEN

    cb = console.cb
    cache = PointCache(cb, min_rows=0)
    deadline = _time.monotonic() + 60
    while (copy := cache.relation("vehicle_positions")) is None:
        assert _time.monotonic() < deadline, "the copy was never built"
        _time.sleep(0.05)
    t1 = cb.sql("SELECT max(ts) FROM lake.vehicle_positions").column(0)[0].as_py()
    t0 = t1 - timedelta(minutes=10)
    assert layers.heat(cb, "vehicle_positions", OPEN, t0, t1, 8, copy) == layers.heat(
        cb, "vehicle_positions", OPEN, t0, t1, 8
    )
    a = layers.vehicles(cb, "vehicle_positions", OPEN, t1, timedelta(minutes=5), copy)
    b = layers.vehicles(cb, "vehicle_positions", OPEN, t1, timedelta(minutes=5))
    assert [f["geometry"] for f in a["features"]] == [f["geometry"] for f in b["features"]] != []
    lon, lat = (
        cb.sql("SELECT lon, lat FROM lake.vehicle_positions ORDER BY ts LIMIT 1").to_pylist()[0].values()
    )
    x, y = _tile_of(lon, lat, 13)
    a_tile = tiles.tile(cb, "vehicle_positions", OPEN, 13, x, y, t0, t1, copy)
    b_tile = tiles.tile(cb, "vehicle_positions", OPEN, 13, x, y, t0, t1)
    # The same features (the aggregate may write them in another order).
    assert (len(a_tile[0]), *a_tile[1:]) == (len(b_tile[0]), *b_tile[1:])
    assert a_tile[2] > 0
    # A scoped reader never reads the copy: the layer is computed on the lake, through its scope.
    from citybase.query.scope import ReadScope

    scoped = ReadScope(row_filter="vehicle_type = 'bus'")
    hot = layers.heat(cb, "vehicle_positions", scoped, None, None, 8, copy)
    assert sum(f["properties"]["count"] for f in hot["features"]) == console.count(
        "SELECT count(*) FROM lake.vehicle_positions WHERE vehicle_type = 'bus'"
    )
