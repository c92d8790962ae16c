"""Delimited text (CSV, TSV, pipe- or semicolon-separated), streamed with pyarrow.csv.

Columns come as strings: the gateway's validation step does the typing and quarantines bad values
one by one, so a stray "NA" in a number column cannot fail a 10 GB load. Where the loader says which
types the dataset expects (`ReadOptions.types`: float and time columns), the file is first read
with those types by pyarrow's multithreaded reader, which converts as it parses (read and
validated, 2M GPS rows took 0.6 s of CPU this way against 0.9 s as strings then cast). That pass
only stands while every value converts and every record splits: at the first value that does not
(or a record with the wrong number of fields, whose line a threaded read cannot tell), reading
starts over with strings, one thread, and goes on after the last row already handed out. Either
way the rows are the same, except that the raw copy a quarantined row keeps holds a typed column's
value as parsed (12.5, not "12.50").

Rows the format itself cannot split (wrong number of fields) are not dropped: they come through with
null values and `_error` saying what was wrong, so quarantine can keep them. `_line` is the physical
line where a record starts, counting the header and multi-line quoted values, so a user can open the
file there.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from citybase.gateway.readers._common import ERROR, check_file, check_names, fail, rebatch
from citybase.gateway.readers.base import LINE, ReadOptions, register

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE = 64 * 1024
_BLOCK = 8 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8 = {"utf8", "utf-8", "utf_8", "utf-8-sig", "utf_8_sig", "u8"}


class CsvReader:
    """Delimited text; options: delimiter (sniffed among , ; tab | when not given), encoding."""

    name: str = "csv"
    suffixes: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        check_file(path)
        encoding = _encoding(path, options.encoding)
        sample = _sample(path, encoding)
        if not sample.strip():
            raise fail(path, "the file is empty: no header line")
        delimiter = options.delimiter or sniff_delimiter(sample, prefer_tab=".tsv" in path.name.lower())
        header, header_lines = _header(sample, delimiter)
        if not any(header):
            raise fail(path, "the first line is blank; expected a header line of column names")
        check_names(path, header, (LINE, ERROR))
        types = _hinted(header, options.types)
        done = 0  # the last line handed out
        if types:
            try:
                typed = _batches(path, encoding, delimiter, header, header_lines, types)
                for batch in rebatch(typed, options.batch_rows):
                    yield batch
                    done = max(done, int(pc.max(batch.column(LINE)).as_py() or 0))
                return
            except _Untyped:
                pass  # start over with strings, after the rows already handed out
        batches = _batches(path, encoding, delimiter, header, header_lines, {})
        yield from rebatch(_after(batches, done), options.batch_rows)


class _Untyped(Exception):
    """The typed pass met a value it cannot convert, or a record it cannot number."""


#: Types worth reading typed: pyarrow converts these as the validation step's cast does after
#: trimming, and fails where that cast might not (spaces only, a padded time, "NA", an offset),
#: which sends the file down the string path. Integers are not among them: the validation step
#: reads them through float64 and flags "nan" as not a number, which a typed read would make null.
_TYPED = (pa.float64(), pa.timestamp("us"))


def _hinted(header: list[str], types: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """Header column -> type, matched as the validation step matches names (exact, else any case)."""
    lower = {n.lower(): n for n in header}
    out: dict[str, pa.DataType] = {}
    for name, typ in types.items():
        col = name if name in header else lower.get(name.lower())
        if col is not None and typ in _TYPED and header.count(col) == 1:
            out[col] = typ
    return out


def _after(batches: Iterator[pa.RecordBatch], line: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if line <= 0:
            yield batch
            continue
        keep = pc.greater(batch.column(LINE), line)
        if pc.all(keep).as_py():
            line = 0  # everything from here on is new
            yield batch
        else:
            yield batch.filter(keep)


def sniff_delimiter(sample: str, prefer_tab: bool = False) -> str:
    """The candidate that splits the first records into the most fields, the same number each time.

    >>> sniff_delimiter("a;b;c\\n1;2,5;3\\n")
    ';'
    """
    candidates = ("\t", ",", ";", "|") if prefer_tab else DELIMITERS
    text = sample if sample.endswith("\n") else sample[: sample.rfind("\n") + 1] or sample
    best: tuple[float, int, str] | None = None
    for d in candidates:
        rows = []
        for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=d)):
            if i >= 50:
                break
            if row:
                rows.append(len(row))
        if not rows or rows[0] < 2:
            continue
        same = sum(1 for n in rows if n == rows[0]) / len(rows)
        score = (same, rows[0], d)
        if best is None or score[:2] > best[:2]:
            best = score
    return best[2] if best else ("\t" if prefer_tab else ",")


def _encoding(path: Path, encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise fail(path, f"unknown encoding {encoding!r}") from None
    # pyarrow reads UTF-8 natively and skips a BOM itself; anything else it transcodes via Python.
    return "utf8" if name in _UTF8 else name


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")  # type: ignore[return-value]


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _sample(path: Path, encoding: str) -> str:
    """The first bytes of the (decompressed) file, decoded: enough to sniff and to read the header."""
    try:
        with _open_bytes(path) as f:
            raw = f.read(_SAMPLE)
        decoder = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf8" else encoding)()
        return str(decoder.decode(raw, final=False))
    except UnicodeDecodeError as e:
        raise fail(path, f"not valid {_label(encoding)} text; pass encoding= (e.g. 'gbk')", e) from None
    except (OSError, EOFError) as e:
        raise fail(path, "cannot read the file", e) from None


def _label(encoding: str) -> str:
    return "UTF-8" if encoding == "utf8" else encoding


def _header(sample: str, delimiter: str) -> tuple[list[str], int]:
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    header = next(reader, [])
    return header, reader.line_num


def _batches(
    path: Path,
    encoding: str,
    delimiter: str,
    header: list[str],
    header_lines: int,
    types: dict[str, pa.DataType],
) -> Iterator[pa.RecordBatch]:
    """The file's records, numbered; typed where `types` says (and then raising _Untyped where
    that cannot stand), else all strings."""
    bad: list[_Bad] = []
    typed = bool(types)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # A threaded read does not know a record's number (pyarrow gives None).
        bad.append(_Bad(row.number or 0, row.expected_columns, row.actual_columns, row.text or ""))
        return "skip"

    read_options = pacsv.ReadOptions(
        column_names=header, skip_rows=1, use_threads=typed, block_size=_BLOCK, encoding=encoding
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        newlines_in_values=True,
        ignore_empty_lines=False,  # kept, so that line numbers stay exact; blank rows are dropped below
        invalid_row_handler=on_invalid,
    )
    column_types = {n: types.get(n, pa.string()) for n in header}
    # Only "" is missing (as the validation step blanks it); strings stay strings, "" included.
    convert_options = pacsv.ConvertOptions(
        column_types=column_types, null_values=[""], strings_can_be_null=False
    )
    lines = _LineCounter(header, column_types, first_record=2, first_line=header_lines + 1)
    try:
        with (
            pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None) as stream,
            pacsv.open_csv(stream, read_options, parse_options, convert_options) as reader,
        ):
            for batch in reader:
                if typed and bad:
                    raise _Untyped
                yield lines.number(batch, bad)
    except pa.ArrowInvalid as e:
        if typed:
            raise _Untyped from e
        if "UTF8" in str(e) or "UTF-8" in str(e):
            raise fail(path, "not valid UTF-8 text; pass encoding= (e.g. 'gbk')", e) from None
        raise fail(path, "cannot read as delimited text", e) from None
    except UnicodeDecodeError as e:
        raise fail(path, f"not valid {_label(encoding)} text", e) from None
    except (OSError, EOFError, pa.ArrowException) as e:
        if typed:
            raise _Untyped from e
        raise fail(path, "cannot read the file (truncated or corrupt?)", e) from None
    if typed and bad:
        raise _Untyped
    if bad:
        yield lines.number(pa.RecordBatch.from_pylist([], schema=lines.source_schema), bad, final=True)


class _Bad(NamedTuple):
    """A record pyarrow could not split into the header's number of fields."""

    number: int  # 1-based record number, the header being record 1
    expected: int
    actual: int
    text: str

    @property
    def span(self) -> int:
        return 1 + self.text.count("\n")


class _LineCounter:
    """Turns pyarrow's record stream back into physical line numbers.

    pyarrow reports the records it could not split by record number and hands over the good ones
    in order. A record spans one line plus the newlines inside its quoted values, so walking all
    records in order, adding up spans, gives each one's first line.
    """

    def __init__(
        self, header: list[str], types: dict[str, pa.DataType], first_record: int, first_line: int
    ) -> None:
        self.header = header
        self.record = first_record  # record number of the next record not yet numbered
        self.line = first_line  # the physical line it starts on
        self.source_schema = pa.schema([pa.field(n, types.get(n, pa.string())) for n in header])
        self.schema = self.source_schema.append(pa.field(LINE, pa.int64(), nullable=False)).append(
            pa.field(ERROR, pa.string())
        )

    def number(self, batch: pa.RecordBatch, bad: list[_Bad], final: bool = False) -> pa.RecordBatch:
        """Number `batch` (good rows) and take in the invalid records that come before its end."""
        m = batch.num_rows
        bad.sort()
        nums = np.array([b.number for b in bad], dtype=np.int64)
        # Invalid record j lies before good row k iff c[j] <= k (c: its position among good rows).
        c = nums - self.record - np.arange(len(bad), dtype=np.int64)
        taken = len(bad) if final else int(np.searchsorted(c, m - 1, side="right"))
        k = np.arange(m, dtype=np.int64)
        good = self.record + k + np.searchsorted(c[:taken], k, side="right")
        records = np.concatenate([good, nums[:taken]])
        spans = np.concatenate([self._spans(batch), np.array([b.span for b in bad[:taken]], dtype=np.int64)])
        invalid = bad[:taken]
        del bad[:taken]
        starts = np.empty_like(records)
        if len(records):
            order = np.argsort(records, kind="stable")
            ordered = spans[order]
            ends = self.line + np.cumsum(ordered)
            starts[order] = ends - ordered
            self.record = int(records[order[-1]]) + 1
            self.line = int(ends[-1])
        out = self._good(batch, starts[:m])
        if not invalid:
            return out
        table = pa.Table.from_batches([out, self._invalid(invalid, starts[m:])])
        return table.sort_by(LINE).combine_chunks().to_batches()[0]

    def _spans(self, batch: pa.RecordBatch) -> NDArray[np.int64]:
        spans = np.ones(batch.num_rows, dtype=np.int64)
        for col in batch.columns:
            if not pa.types.is_string(col.type):
                continue  # a number or a time that parsed holds no line break
            data = col.buffers()[2]
            # Most files have no line break inside values: a byte scan of the column rules it out.
            if data is None or not (np.frombuffer(data, dtype=np.uint8) == 10).any():
                continue
            spans += np.asarray(pc.count_substring(col, "\n").to_numpy(zero_copy_only=False), dtype=np.int64)
        return spans

    def _good(self, batch: pa.RecordBatch, starts: NDArray[np.int64]) -> pa.RecordBatch:
        arrays = [*batch.columns, pa.array(starts, pa.int64()), pa.nulls(batch.num_rows, pa.string())]
        out = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        # A blank line comes through as a row of empty strings (nulls, in a typed column): layout,
        # not data.
        if batch.num_columns == 0 or not pc.any(_empty(batch.column(0))).as_py():
            return out
        blank = _empty(batch.column(0))
        for col in batch.columns[1:]:
            blank = pc.and_(blank, _empty(col))
        return out.filter(pc.invert(blank))

    def _invalid(self, invalid: list[_Bad], starts: NDArray[np.int64]) -> pa.RecordBatch:
        keep = [i for i, b in enumerate(invalid) if b.text.strip()]  # whitespace-only lines are layout
        errors = [
            f"expected {invalid[i].expected} fields, found {invalid[i].actual}: {invalid[i].text[:500]}"
            for i in keep
        ]
        arrays = [pa.nulls(len(keep), f.type) for f in self.source_schema]
        arrays += [pa.array(starts[keep], pa.int64()), pa.array(errors, pa.string())]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _empty(col: pa.Array) -> pa.Array:
    return pc.equal(col, "") if pa.types.is_string(col.type) else pc.is_null(col)


register(CsvReader())
