"""GPX tracks through GDAL's GPX driver: one row per track point (waypoints when there are no tracks).

Columns: track and segment (0-based, as GDAL numbers them), time (UTC), ele (metres), name, and the
point as `geometry`. Times are read as text and converted here, because GDAL's Arrow path drops a
GPX time's UTC offset instead of applying it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyogrio

from citybase.errors import MissingDependency
from citybase.gateway.readers._common import check_file, fail
from citybase.gateway.readers.base import GEOMETRY, LINE, ReadOptions, register
from citybase.gateway.readers.ogr import read_ogr

_SOURCE_COLUMNS = ["track_fid", "track_seg_id", "time", "ele", "name"]
SCHEMA = pa.schema(
    [
        ("track", pa.int32()),
        ("segment", pa.int32()),
        ("time", pa.timestamp("us")),
        ("ele", pa.float64()),
        ("name", pa.string()),
        (GEOMETRY, pa.binary()),
        pa.field(LINE, pa.int64(), nullable=False),
    ]
)


class GpxReader:
    """GPX 1.0/1.1: track points, or the waypoints of a file without tracks."""

    name: str = "gpx"
    suffixes: tuple[str, ...] = (".gpx",)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        if "GPX" not in pyogrio.list_drivers():
            raise MissingDependency("GDAL in this pyogrio build lacks the GPX driver; use pyogrio's wheel")
        layer = "track_points" if _has_features(path, "track_points") else "waypoints"
        columns = _SOURCE_COLUMNS if layer == "track_points" else ["time", "ele", "name"]
        batches = read_ogr(path, str(path), layer, options, "GPX", columns=columns, datetime_as_string=True)
        for batch in batches:
            yield _shape(path, batch)


def _has_features(path: Path, layer: str) -> bool:
    try:
        _, table = pyogrio.read_arrow(str(path), layer=layer, max_features=1)
    except (RuntimeError, OSError, pa.ArrowException) as e:
        raise fail(path, "cannot read as GPX", e) from None
    return bool(table.num_rows)


def _shape(path: Path, batch: pa.RecordBatch) -> pa.RecordBatch:
    n = batch.num_rows
    names = batch.schema.names

    def col(name: str, type_: pa.DataType) -> pa.Array:
        return batch.column(name).cast(type_) if name in names else pa.nulls(n, type_)

    arrays = [
        col("track_fid", pa.int32()),
        col("track_seg_id", pa.int32()),
        utc_times(batch.column("time")) if "time" in names else pa.nulls(n, pa.timestamp("us")),
        col("ele", pa.float64()),
        col("name", pa.string()),
        batch.column(GEOMETRY),
        batch.column(LINE),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def utc_times(text: pa.Array) -> pa.Array:
    """ISO 8601 text to naive UTC timestamp[us]; no offset means UTC (as GPX says); unparseable → null.

    >>> utc_times(pa.array(["2024-05-01T08:00:00+08:00", "2024-05-01T00:00:05"])).to_pylist()[0]
    datetime.datetime(2024, 5, 1, 0, 0)
    """
    text = text.cast(pa.string())
    has_offset = pc.match_substring_regex(text, r"(Z|[+-]\d\d(:?\d\d)?)$")
    full = pc.if_else(has_offset, text, pc.binary_join_element_wise(text, "Z", ""))
    try:
        aware = full.cast(pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        aware = pa.array([_parse(v) for v in full.to_pylist()], pa.timestamp("us", tz="UTC"))
    return aware.cast(pa.timestamp("us"))


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("/", "-")).astimezone(UTC)
    except ValueError:
        return None


register(GpxReader())
