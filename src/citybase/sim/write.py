"""Writing the city to disk: GeoParquet layers, Parquet, CSV and GeoJSON data, YAML declarations.

Every writer is byte-deterministic for the same input (no timestamps, no random file names), so
two runs with the same seed give the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from citybase.model.city import CitySpec
from citybase.sim.declare import Output
from citybase.sim.frame import CityFrame
from citybase.sim.scale import Role, WrittenFile
from citybase.sim.vocab import STR


def _plain(df: gpd.GeoDataFrame) -> dict[str, Any]:
    """Columns as numpy arrays pandas understands (numpy StringDType -> Python strings)."""
    cols: dict[str, Any] = {}
    for c in df.columns:
        if c == df.geometry.name:
            continue
        a = df[c].to_numpy()
        cols[c] = a.astype(object) if a.dtype == STR else a
    return cols


def write_layer(
    out: Path, rel: str, gdf: gpd.GeoDataFrame, frame: CityFrame, *, name: str, role: Role = "layer"
) -> WrittenFile:
    """A layer built in metres, written as GeoParquet in EPSG:4326."""
    geom = frame.geoms_to_lonlat(np.asarray(gdf.geometry.values, dtype=object))
    g = gpd.GeoDataFrame(_plain(gdf), geometry=geom, crs="EPSG:4326")
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    g.to_parquet(path, index=False, compression="zstd")
    return WrittenFile(path=rel, role=role, name=name, format="geoparquet", rows=len(g))


def write_city_spec(out: Path, spec: CitySpec) -> WrittenFile:
    data = spec.model_dump(mode="json", exclude_none=True)
    (out / "city.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return WrittenFile(path="city.yaml", role="city", name=spec.name, format="yaml")


def write_output(out: Path, o: Output) -> list[WrittenFile]:
    """The declaration (datasets/<name>.yaml) and the data file of one dataset."""
    name = o.spec.name
    decl = out / "datasets" / f"{name}.yaml"
    decl.parent.mkdir(parents=True, exist_ok=True)
    decl.write_text(o.spec.to_yaml(), encoding="utf-8")
    path = out / o.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if o.format == "parquet":
        pq.write_table(o.table, path, compression="zstd")
    elif o.format == "csv":
        # pandas quotes only where needed, which is what department exports look like
        frame = o.table.to_pandas(types_mapper=pd.ArrowDtype)
        frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
    elif o.format == "geojson":
        g = gpd.GeoDataFrame(o.table.to_pandas(), geometry=o.geometry, crs="EPSG:4326")
        path.write_text(g.to_json(drop_id=True, ensure_ascii=False), encoding="utf-8")
    else:
        raise ValueError(f"unknown format {o.format!r}")
    return [
        WrittenFile(path=f"datasets/{name}.yaml", role="declaration", name=name, format="yaml"),
        WrittenFile(path=o.path, role="data", name=name, format=o.format, rows=o.table.num_rows),
    ]


def write_table(out: Path, rel: str, table: pa.Table, *, name: str) -> WrittenFile:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return WrittenFile(path=rel, role="truth", name=name, format="parquet", rows=table.num_rows)
