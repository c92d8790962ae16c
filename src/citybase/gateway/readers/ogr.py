"""Vector GIS files read through GDAL (pyogrio, straight to Arrow): GeoJSON, GeoPackage, shapefile.

Properties keep the types the file states; the geometry becomes `geometry` (WKB, EPSG:4326),
reprojected from the layer's CRS (or `options.crs`). `_line` is the 1-based feature number.
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyogrio
import pyogrio.raw

from citybase.gateway.readers._common import check_file, check_names, fail, geometry_field, rebatch, with_line
from citybase.gateway.readers._geo import ToWGS84, source_crs
from citybase.gateway.readers.base import GEOMETRY, LINE, ReadOptions, register

_WKB_EXTENSION = b"geoarrow.wkb"
# pyogrio's errors derive from RuntimeError; GDAL's I/O failures may surface as OSError.
_GDAL_ERRORS = (RuntimeError, OSError, pa.ArrowException)


def read_ogr(
    path: Path, source: str, layer: str | None, options: ReadOptions, what: str, **kwargs: Any
) -> Iterator[pa.RecordBatch]:
    """Stream one GDAL layer as batches with `geometry` in EPSG:4326 and `_line`.

    `source` is what GDAL opens (a path, or a /vsizip/ path); `path` is what errors name.
    """
    encoding = _gdal_encoding(path, options.encoding)
    try:
        with pyogrio.raw.open_arrow(
            source,
            layer=layer,
            batch_size=max(1, options.batch_rows),
            use_pyarrow=True,
            encoding=encoding,
            **kwargs,
        ) as (meta, reader):
            schema: pa.Schema = reader.schema
            geom_index = _geometry_index(schema, meta)
            names = [n for i, n in enumerate(schema.names) if i != geom_index]
            check_names(path, names, (LINE, GEOMETRY) if geom_index is not None else (LINE,))
            to_wgs84 = None
            if geom_index is not None:
                to_wgs84 = ToWGS84(source_crs(path, meta.get("crs"), options.crs))
            batches = (_convert(b, geom_index, to_wgs84) for b in reader)
            first = 1
            for batch in rebatch(batches, options.batch_rows):
                yield with_line(batch, first)
                first += batch.num_rows
    except _GDAL_ERRORS as e:
        raise fail(path, f"cannot read as {what}", e) from None


def _gdal_encoding(path: Path, encoding: str) -> str | None:
    # UTF-8 is ReadOptions' default, so it means "as the file says" (a shapefile's .cpg, say);
    # anything else is the user overriding a file that lies about its encoding.
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise fail(path, f"unknown encoding {encoding!r}") from None
    return None if name in ("utf-8", "utf-8-sig") else name


def _geometry_index(schema: pa.Schema, meta: dict[str, Any]) -> int | None:
    for i, f in enumerate(schema):
        if f.metadata and f.metadata.get(b"ARROW:extension:name") == _WKB_EXTENSION:
            return i
    name = meta.get("geometry_name") or "wkb_geometry"
    i = schema.get_field_index(name)
    return None if i < 0 or not meta.get("geometry_type") else i


def _convert(batch: pa.RecordBatch, geom_index: int | None, to_wgs84: ToWGS84 | None) -> pa.RecordBatch:
    if geom_index is None or to_wgs84 is None:
        return batch
    return batch.set_column(geom_index, geometry_field(), to_wgs84(batch.column(geom_index)))


def pick_layer(path: Path, source: str, options: ReadOptions) -> str | None:
    """The layer the user named, or the only one; several and none named is the user's call to make."""
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(source)]
    except _GDAL_ERRORS as e:
        raise fail(path, "cannot open", e) from None
    if options.layer is not None:
        if options.layer not in layers:
            raise fail(path, f"has no layer {options.layer!r}; layers: {', '.join(layers)}")
        return options.layer
    if len(layers) > 1:
        raise fail(path, f"has {len(layers)} layers; pass layer= one of {', '.join(layers)}")
    return layers[0] if layers else None


class GeoJsonReader:
    """GeoJSON FeatureCollection (RFC 7946, so normally already lon/lat)."""

    name: str = "geojson"
    suffixes: tuple[str, ...] = (".geojson", ".json", ".geojsonl", ".geojsons")

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        return read_ogr(path, str(path), None, options, "GeoJSON")


class GpkgReader:
    """GeoPackage; option `layer` picks the table when the file holds more than one."""

    name: str = "gpkg"
    suffixes: tuple[str, ...] = (".gpkg",)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        layer = pick_layer(path, str(path), options)
        return read_ogr(path, str(path), layer, options, "GeoPackage")


class ShapefileReader:
    """ESRI shapefile: the .shp (with its .dbf/.shx/.prj beside it), or a .zip holding one."""

    name: str = "shapefile"
    suffixes: tuple[str, ...] = (".shp", ".shp.zip", ".zip")

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        if path.name.lower().endswith(".zip"):
            source = _shp_in_zip(path, options)
            return read_ogr(path, source, None, options, "a zipped shapefile")
        return read_ogr(path, str(path), None, options, "a shapefile")


def _shp_in_zip(path: Path, options: ReadOptions) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        inner = sorted(n for n in names if n.lower().endswith(".shp") and not n.startswith("__MACOSX"))
    except (zipfile.BadZipFile, OSError) as e:
        raise fail(path, "not a readable zip file", e) from None
    if options.layer is not None:
        inner = [n for n in inner if PurePosixPath(n).stem == options.layer]
    if not inner:
        wanted = f" named {options.layer!r}" if options.layer else ""
        raise fail(path, f"the zip holds no shapefile{wanted}")
    if len(inner) > 1:
        stems = ", ".join(PurePosixPath(n).stem for n in inner)
        raise fail(path, f"the zip holds {len(inner)} shapefiles; pass layer= one of {stems}")
    return f"/vsizip/{path.resolve()}/{inner[0]}"


register(GeoJsonReader())
register(GpkgReader())
register(ShapefileReader())
