"""`simulate`: write the whole sample city (layers, declarations, data, truth, manifest) to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from citybase.model.city import CitySpec, LayerSpec, Level
from citybase.sim import records
from citybase.sim.declare import F, Output, spec
from citybase.sim.frame import BEIJING, CityFrame
from citybase.sim.hotline import hotline_events
from citybase.sim.scale import SimManifest, SimScale, WrittenFile
from citybase.sim.sensors import air_quality, traffic_flow
from citybase.sim.vehicles import vehicle_positions
from citybase.sim.world import START, World, build_world
from citybase.sim.write import write_city_spec, write_layer, write_output, write_table

CITY_NAME = "Sample City"


def simulate(
    out: Path,
    *,
    seed: int = 42,
    scale: SimScale = SimScale(),  # noqa: B008 - frozen, so sharing the default is safe
    frame: CityFrame = BEIJING,
) -> SimManifest:
    """Write a reproducible synthetic city into `out` and return (and save) its manifest.

    Same seed and scale, same bytes. Existing files of the same names are overwritten; other files
    in `out` are left alone.

    >>> import tempfile
    >>> m = simulate(Path(tempfile.mkdtemp()), scale=SimScale.tiny())
    >>> m.get("hotline_events").rows
    200
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = build_world(seed, scale, frame)
    files = _write_city(out, w)
    outputs: list[Output] = [*air_quality(w), *traffic_flow(w), vehicle_positions(w), hotline_events(w)]
    truth_records, truth_links = [], []
    for make in records.ALL:
        o, t = make(w)
        outputs.append(o)
        truth_records.append(t.records)
        truth_links.append(t.links)
    for o in outputs:
        files += write_output(out, o)
    files.append(write_table(out, "truth/records.parquet", pa.concat_tables(truth_records), name="records"))
    files.append(write_table(out, "truth/links.parquet", pa.concat_tables(truth_links), name="links"))
    lon, lat = frame.to_lonlat(*np.asarray(w.boundary.exterior.coords).T)
    manifest = SimManifest(
        seed=seed,
        scale=scale,
        timezone=frame.timezone,
        bbox=(
            round(float(lon.min()), 6),
            round(float(lat.min()), 6),
            round(float(lon.max()), 6),
            round(float(lat.max()), 6),
        ),
        start=str(START.astype("datetime64[D]")),
        files=files,
        bad_rows=[b for o in outputs for b in o.bad_rows],
    )
    manifest.save(out)
    return manifest


def _write_city(out: Path, w: World) -> list[WrittenFile]:
    a, f = w.admin, w.frame
    files = [
        write_layer(out, "city/districts.parquet", a.districts, f, name="district"),
        write_layer(out, "city/streets.parquet", a.streets, f, name="street"),
        write_layer(out, "city/communities.parquet", a.communities, f, name="community"),
        write_layer(out, "city/grid.parquet", w.grid, f, name="grid"),
        write_layer(out, "city/buildings.parquet", w.buildings.frame, f, name="building"),
    ]
    city = CitySpec(
        name=CITY_NAME,
        timezone=f.timezone,
        layers=[
            LayerSpec(level=Level.district, file="city/districts.parquet", code="code", name="name"),
            LayerSpec(
                level=Level.street,
                file="city/streets.parquet",
                code="code",
                name="name",
                parent="parent_code",
            ),
            LayerSpec(
                level=Level.community,
                file="city/communities.parquet",
                code="code",
                name="name",
                parent="parent_code",
            ),
            LayerSpec(level=Level.grid, file="city/grid.parquet", code="code"),
            LayerSpec(
                level=Level.building,
                file="city/buildings.parquet",
                code="code",
                name="name",
                parent="parent_code",
            ),
        ],
    )
    files.insert(0, write_city_spec(out, city))
    # Roads are a layer of the city and also a dataset of the transport department.
    roads = w.roads.frame()
    files.append(write_layer(out, "city/roads.parquet", roads, f, name="roads", role="data"))
    decl = spec(
        name="roads",
        title="道路中心线",
        description="Road centre lines, one row per segment between intersections; a connected network.",
        department="transport",
        system="road-network",
        kind="areas",
        fields=[
            F("road_id", required=True),
            F("name"),
            F("road_class", enum=["arterial", "local"]),
            F("lanes", "int", min=1),
            F("speed_limit", "int", unit="km/h"),
            F("length_m", "float", unit="m"),
            F("from_node", "int", description="intersection id"),
            F("to_node", "int", description="intersection id"),
            F("geometry", description="LineString, WKB in GeoParquet"),
        ],
        geometry={"field": "geometry", "encoding": "wkb"},
        key=["road_id"],
        sharing="unconditional",
        update_cycle="yearly",
    )
    (out / "datasets").mkdir(exist_ok=True)
    (out / "datasets" / "roads.yaml").write_text(decl.to_yaml(), encoding="utf-8")
    files.append(WrittenFile(path="datasets/roads.yaml", role="declaration", name="roads", format="yaml"))
    assert shapely.is_valid(w.boundary)
    return files
