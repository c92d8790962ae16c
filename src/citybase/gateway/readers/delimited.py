"""Delimited text (CSV, TSV, pipe- or semicolon-separated), streamed with pyarrow.csv.

Every column is read as a string: the gateway's validation step does the typing and quarantines bad
values one by one, so a stray "NA" in a number column cannot fail a 10 GB load. Rows the format
itself cannot split (wrong number of fields) are not dropped: they come through with null values
and `_error` saying what was wrong, so quarantine can keep them. `_line` is the physical line where
a record starts, counting the header and multi-line quoted values, so a user can open the file there.
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
        batches = _batches(path, encoding, delimiter, header, header_lines)
        yield from rebatch(batches, options.batch_rows)


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
    path: Path, encoding: str, delimiter: str, header: list[str], header_lines: int
) -> Iterator[pa.RecordBatch]:
    bad: list[_Bad] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(_Bad(row.number, row.expected_columns, row.actual_columns, row.text or ""))
        return "skip"

    read_options = pacsv.ReadOptions(
        column_names=header, skip_rows=1, use_threads=False, block_size=_BLOCK, encoding=encoding
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        newlines_in_values=True,
        ignore_empty_lines=False,  # kept, so that line numbers stay exact; blank rows are dropped below
        invalid_row_handler=on_invalid,
    )
    convert_options = pacsv.ConvertOptions(column_types={n: pa.string() for n in header})
    lines = _LineCounter(header, first_record=2, first_line=header_lines + 1)
    try:
        with (
            pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None) as stream,
            pacsv.open_csv(stream, read_options, parse_options, convert_options) as reader,
        ):
            for batch in reader:
                yield lines.number(batch, bad)
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "UTF-8" in str(e):
            raise fail(path, "not valid UTF-8 text; pass encoding= (e.g. 'gbk')", e) from None
        raise fail(path, "cannot read as delimited text", e) from None
    except UnicodeDecodeError as e:
        raise fail(path, f"not valid {_label(encoding)} text", e) from None
    except (OSError, EOFError, pa.ArrowException) as e:
        raise fail(path, "cannot read the file (truncated or corrupt?)", e) from None
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

    def __init__(self, header: list[str], first_record: int, first_line: int) -> None:
        self.header = header
        self.record = first_record  # record number of the next record not yet numbered
        self.line = first_line  # the physical line it starts on
        self.source_schema = pa.schema([pa.field(n, pa.string()) for n in header])
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
            data = col.buffers()[2]
            # Most files have no line break inside values: a byte scan of the column rules it out.
            if data is None or not (np.frombuffer(data, dtype=np.uint8) == 10).any():
                continue
            spans += np.asarray(pc.count_substring(col, "\n").to_numpy(zero_copy_only=False), dtype=np.int64)
        return spans

    def _good(self, batch: pa.RecordBatch, starts: NDArray[np.int64]) -> pa.RecordBatch:
        arrays = [*batch.columns, pa.array(starts, pa.int64()), pa.nulls(batch.num_rows, pa.string())]
        out = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        # A blank line comes through as a row of empty strings: layout, not data.
        if batch.num_columns == 0 or not pc.any(pc.equal(batch.column(0), "")).as_py():
            return out
        blank = pc.equal(batch.column(0), "")
        for col in batch.columns[1:]:
            blank = pc.and_(blank, pc.equal(col, ""))
        return out.filter(pc.invert(blank))

    def _invalid(self, invalid: list[_Bad], starts: NDArray[np.int64]) -> pa.RecordBatch:
        keep = [i for i, b in enumerate(invalid) if b.text.strip()]  # whitespace-only lines are layout
        errors = [
            f"expected {invalid[i].expected} fields, found {invalid[i].actual}: {invalid[i].text[:500]}"
            for i in keep
        ]
        arrays = [pa.nulls(len(keep), pa.string()) for _ in self.header]
        arrays += [pa.array(starts[keep], pa.int64()), pa.array(errors, pa.string())]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


register(CsvReader())
