"""Microsoft Research Asia's GeoLife GPS trajectories: `.plt` tracks and `labels.txt` transport modes.

A .plt file has 6 header lines, then `lat,lon,0,altitude_ft,days_since_1899-12-30,date,time` with
times in GMT. The user is not in the file, only in its path (`Data/<user>/Trajectory/<track>.plt`).
Values the format states as numbers are parsed; one that does not parse becomes null (a row-level
problem for quarantine) rather than failing the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from citybase.gateway.readers._common import ERROR, check_file, fail, rebatch
from citybase.gateway.readers.base import LINE, ReadOptions, register

PLT_HEADER_LINES = 6
FEET = 0.3048
MISSING_ALTITUDE = -777.0
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_PLT_COLUMNS = ["lat", "lon", "zero", "altitude_ft", "days", "date", "time"]
PLT_SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("track", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("altitude_m", pa.float64()),
        ("time", pa.timestamp("us")),
        pa.field(LINE, pa.int64(), nullable=False),
        (ERROR, pa.string()),
    ]
)
LABELS_SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("start_time", pa.timestamp("us")),
        ("end_time", pa.timestamp("us")),
        ("mode", pa.string()),
        pa.field(LINE, pa.int64(), nullable=False),
        (ERROR, pa.string()),
    ]
)
_LABELS_HEADER = ["Start Time", "End Time", "Transportation Mode"]


def geolife_user(path: Path) -> str:
    """The user folder: the one above `Trajectory`, else the file's parent folder.

    >>> geolife_user(Path("Data/010/Trajectory/20080330004134.plt"))
    '010'
    """
    parent = path.parent
    if parent.name.lower() == "trajectory" and parent.parent.name:
        return parent.parent.name
    return parent.name


class PltReader:
    """GeoLife .plt: columns user, track, lat, lon, altitude_m, time (UTC)."""

    name: str = "geolife"
    suffixes: tuple[str, ...] = (".plt",)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        user, track = geolife_user(path.absolute()), path.stem
        table = _read_text(path, PLT_HEADER_LINES, _PLT_COLUMNS, "GeoLife .plt")
        yield from rebatch(self._batches(table, user, track), options.batch_rows)

    def _batches(self, table: pa.Table, user: str, track: str) -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches():
            n = batch.num_rows
            feet = _number(batch.column("altitude_ft"))
            moment = pc.binary_join_element_wise(batch.column("date"), batch.column("time"), " ")
            lat, lon = _number(batch.column("lat")), _number(batch.column("lon"))
            time = _timestamp(moment, "%Y-%m-%d %H:%M:%S")
            arrays = [
                pa.array([user] * n, pa.string()),
                pa.array([track] * n, pa.string()),
                lat,
                lon,
                pc.if_else(pc.equal(feet, MISSING_ALTITUDE), None, pc.multiply(feet, FEET)),
                time,
                batch.column(LINE),
                _errors(
                    batch,
                    {
                        "lat": (batch.column("lat"), lat),
                        "lon": (batch.column("lon"), lon),
                        "altitude": (batch.column("altitude_ft"), feet),
                        "date and time": (moment, time),
                    },
                ),
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=PLT_SCHEMA)


class LabelsReader:
    """GeoLife labels.txt: user, start_time, end_time (as written, GeoLife's GMT), mode."""

    name: str = "geolife_labels"
    suffixes: tuple[str, ...] = ("labels.txt",)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        with path.open("rb") as f:
            first = f.readline().decode("utf-8", "replace").strip().split("\t")
        if first != _LABELS_HEADER:
            raise fail(
                path,
                "not a GeoLife labels file (header 'Start Time<TAB>End Time<TAB>Transportation "
                "Mode'); pass format='csv' to read it as plain delimited text",
            )
        table = _read_text(path, 1, ["start", "end", "mode"], "GeoLife labels", delimiter="\t")
        user = geolife_user(path.absolute())
        batches = []
        for batch in table.to_batches():
            start = _timestamp(batch.column("start"), "%Y/%m/%d %H:%M:%S")
            end = _timestamp(batch.column("end"), "%Y/%m/%d %H:%M:%S")
            arrays = [
                pa.array([user] * batch.num_rows, pa.string()),
                start,
                end,
                batch.column("mode"),
                batch.column(LINE),
                _errors(
                    batch,
                    {"Start Time": (batch.column("start"), start), "End Time": (batch.column("end"), end)},
                ),
            ]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=LABELS_SCHEMA))
        yield from rebatch(batches, options.batch_rows)


def _read_text(path: Path, skip: int, columns: list[str], what: str, delimiter: str = ",") -> pa.Table:
    """The whole file as string columns with `_line` and `_error`; GeoLife files are small (a trip each).

    These formats have no quoting, so pyarrow's record number of a row it cannot split is its line.
    """
    bad: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        text = row.text or ""
        if text.strip():
            found = f"expected {row.expected_columns} fields, found {row.actual_columns}"
            bad.append((row.number, f"{found}: {text[:500]}"))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=columns, skip_rows=skip, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}),
        )
    except (pa.ArrowException, OSError) as e:
        raise fail(path, f"cannot read as {what}", e) from None
    skipped = np.array(sorted(n for n, _ in bad), dtype=np.int64)
    # Good rows fill the lines after the header that are not skipped ones, in order.
    k = np.arange(table.num_rows, dtype=np.int64)
    c = skipped - (skip + 1) - np.arange(len(skipped), dtype=np.int64)
    lines = skip + 1 + k + np.searchsorted(c, k, side="right")
    table = table.append_column(pa.field(LINE, pa.int64(), nullable=False), pa.array(lines, pa.int64()))
    table = table.append_column(ERROR, pa.nulls(table.num_rows, pa.string()))
    # Blank lines (a trailing one, typically) were kept for the numbering; they carry no row.
    table = table.filter(pc.not_equal(table.column(columns[0]), ""))
    if bad:
        values = {c: pa.nulls(len(bad), pa.string()) for c in columns}
        lines_and_errors = {
            LINE: pa.array([n for n, _ in bad], pa.int64()),
            ERROR: pa.array([m for _, m in bad], pa.string()),
        }
        broken = pa.table(values | lines_and_errors).cast(table.schema)
        table = pa.concat_tables([table, broken]).sort_by(LINE)
    return table


def _number(text: pa.ChunkedArray | pa.Array) -> pa.Array:
    ok = pc.match_substring_regex(text, _NUMBER)
    return pc.if_else(ok, text, None).cast(pa.float64())


def _timestamp(text: pa.ChunkedArray | pa.Array, format: str) -> pa.Array:
    return pc.strptime(pc.utf8_trim_whitespace(text), format=format, unit="us", error_is_null=True)


def _errors(batch: pa.RecordBatch, parsed: dict[str, tuple[pa.Array, pa.Array]]) -> pa.Array:
    """`_error` of the batch, plus a note per source value (text, parsed) that was there but did not parse."""
    error = batch.column(ERROR)
    for name, (text, value) in parsed.items():
        lost = pc.and_(pc.is_null(value), pc.and_(pc.is_valid(text), pc.not_equal(text, "")))
        if not pc.any(lost).as_py():
            continue
        note = pc.binary_join_element_wise(f"{name}: cannot parse ", text, "")
        note = pc.if_else(lost, note, None)
        joined = pc.binary_join_element_wise(error, note, "; ")
        error = pc.coalesce(joined, error, note)
    return error


register(PltReader())
register(LabelsReader())
