"""The synthetic sample city: reproducible, geometrically sound, and true to its own declarations."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from citybase.model.city import CitySpec
from citybase.model.dataset import DatasetSpec, FieldType
from citybase.sim import (
    BEIJING,
    SimManifest,
    SimScale,
    credit_code_valid,
    districts,
    gps_points,
    id_number_valid,
    iter_gps_points,
    simulate,
)
from citybase.sim.frame import city_boundary

SEED = 7
UTM50N = "EPSG:32650"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimManifest]:
    out = tmp_path_factory.mktemp("city")
    return out, simulate(out, seed=SEED, scale=SimScale.tiny())


def _layer(out: Path, name: str) -> gpd.GeoDataFrame:
    return gpd.read_parquet(out / "city" / f"{name}.parquet")


def _records(out: Path, m: SimManifest, name: str) -> pd.DataFrame:
    path = out / m.get(name).path
    return pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- reproducibility ---------------------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path: Path, city: tuple[Path, SimManifest]) -> None:
    out, m = city
    again = simulate(tmp_path / "again", seed=SEED, scale=SimScale.tiny())
    assert again == m
    first, second = _files(out), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []


def test_other_seed_other_city(tmp_path: Path, city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    simulate(tmp_path, seed=SEED + 1, scale=SimScale.tiny())
    for rel in ("city/districts.parquet", "data/hotline_events.csv", "data/ps_residents.parquet"):
        assert (out / rel).read_bytes() != (tmp_path / rel).read_bytes()


def test_manifest_lists_what_was_written(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    assert SimManifest.load(out) == m
    listed = {f.path for f in m.files} | {"manifest.json"}
    assert listed == set(_files(out))
    for f in m.files:
        if f.format in ("parquet", "geoparquet"):
            assert pq.read_metadata(out / f.path).num_rows == f.rows, f.path
        elif f.format == "csv":
            assert len(pd.read_csv(out / f.path, dtype=str)) == f.rows, f.path
        elif f.format == "geojson":
            assert len(json.loads((out / f.path).read_text(encoding="utf-8"))["features"]) == f.rows
    assert m.get("hotline_events").rows == SimScale.tiny().hotline_events
    assert m.get("building", "layer").rows == SimScale.tiny().buildings
    west, south, east, north = m.bbox
    assert 116.2 <= west < east <= 116.6 and 39.75 <= south < north <= 40.05


# -- the place layers --------------------------------------------------------------------------


def test_city_spec_names_existing_layers(city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    spec = CitySpec.from_file(out / "city.yaml")
    assert spec.timezone == "Asia/Shanghai"
    assert [layer.level.value for layer in spec.layers] == [
        "district",
        "street",
        "community",
        "grid",
        "building",
    ]
    for layer in spec.layers:
        gdf = gpd.read_parquet(layer.file)
        assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
        for col in (layer.code, layer.name, layer.parent):
            assert col is None or col in gdf.columns
        assert gdf[layer.code].is_unique


def test_districts_tile_the_city(city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    boundary = BEIJING.geoms_to_lonlat(np.array([city_boundary(BEIJING, SEED)], dtype=object))[0]
    for level in ("districts", "streets", "communities", "grid"):
        geoms = _layer(out, level).geometry.values
        union = shapely.union_all(geoms)
        # no overlaps: the parts add up to their union; no gaps: the union is the city
        assert abs(shapely.area(geoms).sum() - union.area) < 1e-9 * boundary.area, level
        assert union.symmetric_difference(boundary).area < 1e-9 * boundary.area, level


@pytest.mark.parametrize(
    ("child", "parent", "digits"), [("streets", "districts", 9), ("communities", "streets", 12)]
)
def test_children_inside_their_parent(
    city: tuple[Path, SimManifest], child: str, parent: str, digits: int
) -> None:
    out, _ = city
    kids, parents = _layer(out, child), _layer(out, parent).set_index("code")
    assert kids["code"].str.fullmatch(rf"\d{{{digits}}}").all()
    assert (kids["code"].str[: digits - 3] == kids["parent_code"]).all()
    mother = parents.geometry.loc[kids["parent_code"]].values
    outside = shapely.area(shapely.difference(kids.geometry.values, mother))
    assert (outside < 1e-9 * shapely.area(kids.geometry.values)).all()
    assert set(kids["parent_code"]) == set(parents.index)


def test_codes_look_like_division_codes(city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    assert list(_layer(out, "districts")["code"]) == ["110101", "110102", "110103"]
    assert _layer(out, "grid")["code"].str.fullmatch(r"G\d{4}-\d{4}").all()
    assert districts(300, seed=1)["code"].str.fullmatch(r"11\d{4}").all()


def test_buildings_sit_apart_inside_blocks(city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    b = _layer(out, "buildings")
    comm = _layer(out, "communities").set_index("code")
    assert b["address"].is_unique and b["code"].is_unique
    assert (b["code"].str[:12] == b["parent_code"]).all()
    assert shapely.within(b.geometry.values, comm.geometry.loc[b["parent_code"]].values).all()
    bm = b.to_crs(UTM50N).geometry.values
    i, j = shapely.STRtree(bm).query(bm, predicate="intersects")
    assert (i == j).all(), "buildings overlap"
    roads = gpd.read_parquet(out / "city" / "roads.parquet").to_crs(UTM50N).geometry.values
    _, dist = shapely.STRtree(roads).query_nearest(bm, return_distance=True, all_matches=False)
    assert dist.min() > 5.0  # at least beyond half a local street's width
    assert dist.max() < 120.0  # and along a road, not in the middle of a block


def test_roads_form_one_network(city: tuple[Path, SimManifest]) -> None:
    out, _ = city
    r = gpd.read_parquet(out / "city" / "roads.parquet")
    nodes = np.unique(r[["from_node", "to_node"]].to_numpy())
    assert set(r["road_class"]) == {"arterial", "local"}
    # connected: min-label propagation over the segments ends with one label
    edges = r[["from_node", "to_node"]].to_numpy()
    lab = np.arange(int(nodes.max()) + 1)
    for _ in range(len(nodes)):
        low = np.minimum(lab[edges[:, 0]], lab[edges[:, 1]])
        new = lab.copy()
        np.minimum.at(new, edges[:, 0], low)
        np.minimum.at(new, edges[:, 1], low)
        if np.array_equal(new, lab):
            break
        lab = new
    assert len(np.unique(lab[nodes])) == 1


# -- datasets ----------------------------------------------------------------------------------


def _columns(path: Path) -> dict[str, str | None]:
    """Column name -> Arrow type name (None for text formats) of a data file."""
    if path.suffix == ".parquet":
        return {f.name: str(f.type) for f in pq.read_schema(path)}
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return dict.fromkeys(next(csv.reader(fh)))
    feature = json.loads(path.read_text(encoding="utf-8"))["features"][0]
    return dict.fromkeys([*feature["properties"], "geometry"])


_ARROW = {
    FieldType.string: ("string", "large_string", "binary"),
    FieldType.int: ("int64",),
    FieldType.float: ("double",),
    FieldType.date: ("date32[day]",),
    FieldType.timestamp: ("timestamp[us, tz=Asia/Shanghai]",),
}


def test_declarations_parse_and_match_their_files(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    assert set(m.datasets) == {
        *("roads", "air_quality_stations", "air_quality", "traffic_detectors", "traffic_flow"),
        *("vehicle_positions", "hotline_events", "ps_residents", "hrss_insured", "civil_assistance"),
        *("market_enterprises", "eco_pollutant_permits", "housing_buildings"),
    }
    kinds = set()
    for name, (decl, data) in m.datasets.items():
        spec = DatasetSpec.from_file(out / decl)
        assert spec.name == name
        kinds.add(spec.kind.value)
        cols = _columns(out / data)
        assert set(cols) == {f.source or f.name for f in spec.fields}, name
        for f in spec.fields:
            arrow = cols[f.source or f.name]
            assert arrow is None or arrow in _ARROW[f.type], (name, f.name, arrow)
    assert kinds == {"points", "tracks", "series", "areas", "records"}
    formats = {f.format for f in m.files if f.role == "data"}
    assert formats == {"parquet", "geoparquet", "csv", "geojson"}


def _frame(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return pd.DataFrame([f["properties"] for f in features])


def test_values_keep_their_declaration(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    for name, (decl, data) in m.datasets.items():
        spec = DatasetSpec.from_file(out / decl)
        df = _frame(out / data).drop(index=[b.row for b in m.bad_rows if b.dataset == name])
        for f in spec.fields:
            col = f.source or f.name
            if col not in df.columns:  # the geometry of a GeoJSON file
                continue
            values = df[col].dropna()
            assert not f.required or len(values) == len(df), (name, col)
            assert not f.enum or set(values.astype(str)) <= set(f.enum), (name, col)
            if f.min is not None or f.max is not None:
                x = pd.to_numeric(values)
                assert f.min is None or (x >= f.min).all(), (name, col, x.min())
                assert f.max is None or (x <= f.max).all(), (name, col, x.max())


def test_personal_data_is_tagged(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    spec = DatasetSpec.from_file(out / m.datasets["ps_residents"][0])
    assert {f.name: f.personal.value for f in spec.fields if f.personal} == {
        "name": "name",
        "id_number": "id_number",
        "phone": "phone",
        "address": "address",
    }


def test_vehicles_drive_on_the_roads(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    v = pd.read_parquet(out / m.get("vehicle_positions").path)
    roads = gpd.read_parquet(out / "city" / "roads.parquet").to_crs(UTM50N).geometry.values
    pts = gpd.GeoSeries(gpd.points_from_xy(v["gps_lon"], v["gps_lat"]), crs="EPSG:4326").to_crs(UTM50N).values
    _, dist = shapely.STRtree(roads).query_nearest(pts, return_distance=True, all_matches=False)
    assert dist.max() < 1.0
    # time runs forward and nobody jumps: consecutive fixes at most 10 s x 100 km/h apart
    v["x"], v["y"] = shapely.get_x(pts), shapely.get_y(pts)
    g = v.groupby("vehicle_id")
    assert (g["ts"].diff().dropna() == pd.Timedelta(seconds=10)).all()
    step = np.hypot(g["x"].diff().dropna(), g["y"].diff().dropna())
    assert step.max() < 10 * 100 / 3.6
    assert set(v["vehicle_type"]) == {"taxi", "bus"}


def test_series_have_cycles_and_holes(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    aq = pd.read_parquet(out / m.get("air_quality").path)
    hour = aq["ts"].dt.hour
    assert aq["o3"].isna().any() and aq["pm25"].isna().any()
    assert aq.loc[hour.between(13, 16), "o3"].mean() > 2 * aq.loc[hour.between(1, 4), "o3"].mean()
    tf = pd.read_parquet(out / m.get("traffic_flow").path)
    t = tf["ts"].dt
    monday = tf[t.day_of_week == 0]
    assert monday.loc[t.hour == 8, "speed"].mean() < monday.loc[t.hour == 3, "speed"].mean() - 5
    assert monday.loc[t.hour == 8, "volume"].mean() > 3 * monday.loc[t.hour == 3, "volume"].mean()


def test_hotline_events_cluster_at_buildings(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    h = pd.read_csv(out / m.get("hotline_events").path, dtype=str)
    bad = {b.row for b in m.bad_rows}
    good = h.drop(index=sorted(bad))
    pts = gpd.GeoSeries(
        gpd.points_from_xy(good["经度"].astype(float), good["纬度"].astype(float)), crs="EPSG:4326"
    ).to_crs(UTM50N)
    b = _layer(out, "buildings").to_crs(UTM50N).geometry.values
    _, dist = shapely.STRtree(b).query_nearest(pts.values, return_distance=True, all_matches=False)
    assert np.median(dist) < 30.0
    assert good["诉求内容"].str.contains(r"[\u4e00-\u9fff]").all()


# -- records, identifiers and truth ------------------------------------------------------------


def test_identifier_checks() -> None:
    assert id_number_valid(np.array(["11010519491231002X", "11010519491231002x"])).all()
    assert not id_number_valid(np.array(["110105194912310021", "1101051949123100", ""])).any()
    assert credit_code_valid(np.array(["91350100M000100Y43"])).all()
    assert not credit_code_valid(np.array(["91350100M000100Y44", "91350100M000100I43", "9135"])).any()


def test_generated_identifiers_are_valid(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    for name, col in [
        ("ps_residents", "id_number"),
        ("hrss_insured", "id_number"),
        ("civil_assistance", "id_card_no"),
    ]:
        ids = _records(out, m, name)[col].dropna().to_numpy(dtype=str)
        assert len(ids) > 0 and id_number_valid(ids).all(), name
    for name in ("market_enterprises", "eco_pollutant_permits"):
        codes = _records(out, m, name)["uscc"].dropna().to_numpy(dtype=str)
        assert len(codes) > 0 and credit_code_valid(codes).all(), name


def test_truth_covers_every_record(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    truth = pd.read_parquet(out / "truth" / "records.parquet")
    links = pd.read_parquet(out / "truth" / "links.parquet")
    buildings = set(_layer(out, "buildings")["code"])
    record_sets = [
        n for n in m.datasets if DatasetSpec.from_file(out / m.datasets[n][0]).kind.value == "records"
    ]
    assert set(truth["dataset"]) == set(record_sets)
    for name in record_sets:
        ids = _records(out, m, name)["record_id"]
        t = truth[truth["dataset"] == name]
        assert ids.is_unique and sorted(ids) == sorted(t["record_id"]), name
        assert "entity_id" not in _records(out, m, name).columns
    assert set(truth.loc[truth["entity_type"] == "building", "entity_id"]) <= buildings
    assert set(links.loc[links["entity_type"] == "building", "entity_id"]) <= buildings
    assert set(links.loc[links["entity_type"] == "person", "entity_id"]) <= set(truth["entity_id"])


def test_same_person_in_several_departments(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    truth = pd.read_parquet(out / "truth" / "records.parquet")
    ps = _records(out, m, "ps_residents").merge(truth, on="record_id")
    hr = _records(out, m, "hrss_insured").merge(truth, on="record_id")
    both = ps.merge(hr, on="entity_id", suffixes=("_ps", "_hr"))
    assert len(both) > 0.4 * len(hr)
    # the truth is right: where social security has the ID number, it is the same person's
    known = both.dropna(subset=["id_number_hr"])
    assert (known["id_number_ps"].str.upper() == known["id_number_hr"].str.upper()).all()
    # and the copies really differ, in the ways real copies do
    assert (both["address_ps"] != both["address_hr"]).mean() > 0.2
    assert hr["phone"].dropna().str.startswith("+86").any()
    assert (both["name_ps"] != both["name_hr"]).any() or len(both) < 50


def test_bad_rows_are_where_the_manifest_says(city: tuple[Path, SimManifest]) -> None:
    out, m = city
    assert {b.reason for b in m.bad_rows} == {
        "not a number in an int field",
        "timestamp does not parse",
        "coordinates outside the world",
    }
    path = out / m.bad_rows[0].path
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = list(csv.DictReader(lines))
    for b in m.bad_rows:
        assert b.value in lines[b.line - 1]
        assert rows[b.row][b.column] == b.value
    spec = DatasetSpec.from_file(out / m.datasets["hotline_events"][0])
    fmt = spec.field("reported_at").format
    assert fmt is not None
    bad_rows = {b.row for b in m.bad_rows}
    for i, row in enumerate(rows):  # every other row is clean
        if i in bad_rows:
            continue
        datetime.strptime(row["来电时间"], fmt)
        assert row["满意度"] == "" or 1 <= int(row["满意度"]) <= 5
        assert 116.0 < float(row["经度"]) < 117.0 and 39.5 < float(row["纬度"]) < 40.5


# -- benchmark helpers -------------------------------------------------------------------------


def test_gps_points_chunks_add_up() -> None:
    whole = gps_points(25_000, seed=3)
    assert whole.schema.names == ["object_id", "ts", "lon", "lat", "speed"]
    assert whole.schema.field("ts").type == pa.timestamp("us")
    assert whole.schema.field("speed").type == pa.float32()
    assert pa.concat_tables(list(iter_gps_points(25_000, 7_001, seed=3))).equals(whole)
    assert gps_points(25_000, seed=3).equals(whole)
    assert not gps_points(25_000, seed=4).equals(whole)


def test_gps_points_look_like_a_city() -> None:
    t = gps_points(200_000, seed=5).to_pandas()
    assert t["lon"].between(BEIJING.west, BEIJING.east).all()
    assert t["lat"].between(BEIJING.south, BEIJING.north).all()
    assert (t["ts"].max() - t["ts"].min()) <= pd.Timedelta(days=30)
    assert (t.groupby("object_id")["ts"].diff().dropna() > pd.Timedelta(0)).all()
    # the central quarter of the box holds far more than a quarter of the points
    centre = t["lon"].between(116.3, 116.5) & t["lat"].between(39.825, 39.975)
    assert centre.mean() > 0.4


def test_benchmark_districts_tile() -> None:
    d = districts(300, seed=2)
    assert len(d) == 300 and d["code"].is_unique
    union = shapely.union_all(d.geometry.values)
    assert abs(shapely.area(d.geometry.values).sum() - union.area) < 1e-9 * union.area
