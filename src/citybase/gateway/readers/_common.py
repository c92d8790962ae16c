"""Small pieces every reader needs: fixed-size batches, the `_line` column, errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from citybase.errors import InputError
from citybase.gateway.readers.base import GEOMETRY, LINE

#: Text formats add this column: null, or why the format itself could not give the row's values (a
#: line with the wrong number of fields, a number that is not one). Quarantine keeps such rows.
ERROR = "_error"


def fail(path: Path, what: str, cause: BaseException | None = None) -> InputError:
    """An InputError naming the file, with the library's message (never its traceback) appended."""
    detail = f": {_first_line(cause)}" if cause is not None and str(cause) else ""
    return InputError(f"{path}: {what}{detail}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def check_file(path: Path) -> None:
    """Fail early, and in our words, on a path that is not a readable file."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")


def check_names(path: Path, names: Iterable[str], reserved: Iterable[str] = (LINE,)) -> None:
    """A source column may not take a name the reader itself adds; say so instead of clobbering it."""
    taken = set(reserved) & set(names)
    if taken:
        raise InputError(f"{path}: column {sorted(taken)[0]!r} is reserved for the reader's own output")


def with_line(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """Append `_line` numbering the batch's rows from `first` (feature / row numbering)."""
    lines = pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64))
    return batch.append_column(pa.field(LINE, pa.int64(), nullable=False), lines)


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream into batches of exactly `rows` rows (the last one shorter).

    Libraries cut by bytes or by their own defaults; the gateway sizes its work by rows.
    """
    rows = max(1, rows)
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(held).combine_chunks()
            yield table.slice(0, rows).to_batches()[0]
            rest = table.slice(rows)
            held = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]


def geometry_field() -> pa.Field:
    """The one geometry column geographic readers deliver: WKB in EPSG:4326."""
    return pa.field(GEOMETRY, pa.binary())
