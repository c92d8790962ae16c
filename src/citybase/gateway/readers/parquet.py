"""Parquet and GeoParquet, streamed by row group with pyarrow.

Columns keep the types the file states. With GeoParquet `geo` metadata, the primary geometry column
comes out as `geometry` (WKB, EPSG:4326) in its place; other geometry columns stay as stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from citybase.gateway.readers._common import check_file, check_names, fail, rebatch, with_line
from citybase.gateway.readers._geo import ToWGS84, source_crs
from citybase.gateway.readers.base import GEOMETRY, LINE, ReadOptions, register

# GeoParquet: a column without "crs" is OGC:CRS84 (lon/lat); "crs": null means unknown.
_CRS84 = "OGC:CRS84"


class ParquetReader:
    """Parquet; GeoParquet's primary geometry becomes `geometry` WKB in EPSG:4326."""

    name: str = "parquet"
    suffixes: tuple[str, ...] = (".parquet", ".geoparquet", ".parq")

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise fail(path, "cannot read as Parquet", e) from None
        geo = _geo_metadata(path, pf.schema_arrow)
        column, to_wgs84 = _primary(path, geo, options) if geo else (None, None)
        names = pf.schema_arrow.names
        check_names(path, names, (LINE,))
        if column is not None and column != GEOMETRY and GEOMETRY in names:
            raise fail(path, f"has a column {GEOMETRY!r} besides its primary geometry {column!r}")
        yield from rebatch(self._batches(path, pf, options, column, to_wgs84), options.batch_rows)

    def _batches(
        self,
        path: Path,
        pf: pq.ParquetFile,
        options: ReadOptions,
        column: str | None,
        to_wgs84: ToWGS84 | None,
    ) -> Iterator[pa.RecordBatch]:
        first = 1
        try:
            for batch in pf.iter_batches(batch_size=max(1, options.batch_rows), use_threads=True):
                if column is not None and to_wgs84 is not None:
                    i = batch.schema.get_field_index(column)
                    wkb = to_wgs84(batch.column(i))
                    batch = batch.set_column(i, pa.field(GEOMETRY, pa.binary()), wkb)
                yield with_line(batch, first)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise fail(path, "cannot read as Parquet (truncated or corrupt?)", e) from None
        finally:
            pf.close()


def _geo_metadata(path: Path, schema: pa.Schema) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        return None
    try:
        geo = json.loads(raw)
    except ValueError as e:
        raise fail(path, "its GeoParquet 'geo' metadata is not JSON", e) from None
    if not isinstance(geo, dict) or not isinstance(geo.get("columns"), dict):
        raise fail(path, "its GeoParquet 'geo' metadata has no 'columns'")
    return geo


def _primary(path: Path, geo: dict[str, Any], options: ReadOptions) -> tuple[str, ToWGS84]:
    column = geo.get("primary_column")
    spec = geo["columns"].get(column) if isinstance(column, str) else None
    if not isinstance(column, str) or not isinstance(spec, dict):
        raise fail(path, f"GeoParquet primary_column {column!r} is not among its geometry columns")
    encoding = str(spec.get("encoding", "WKB"))
    if encoding.upper() != "WKB":
        raise fail(path, f"GeoParquet encoding {encoding!r} of {column!r} is not supported (only WKB)")
    declared = spec.get("crs", _CRS84)
    if isinstance(declared, dict):  # PROJJSON
        declared = json.dumps(declared)
    return column, ToWGS84(source_crs(path, declared, options.crs))


register(ParquetReader())
