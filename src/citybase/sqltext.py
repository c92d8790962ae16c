"""SQL text: identifiers and literals, for every box that writes SQL (the store and the queries).

Values are written into the SQL as literals, not bound as parameters: DuckDB then folds them at plan
time, so a predicate reaches the scan as a table filter and prunes files and row groups. `literal`
only emits numbers, quoted strings and typed dates and timestamps.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from citybase.errors import InputError


def quote(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A value as a SQL literal (None, bool, int, float, str, datetime, date, bytes).

    >>> literal("O'Brien"), literal(1.5), literal(datetime(2024, 1, 2, 3, 4, 5))
    ("'O''Brien'", '1.5', "TIMESTAMP '2024-01-02 03:04:05.000000'")
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise InputError(f"not a finite number: {value!r}")
        return repr(f)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{to_utc(value):%Y-%m-%d %H:%M:%S.%f}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, bytes):
        return f"from_hex('{value.hex()}')"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise InputError(f"cannot use {type(value).__name__} value {value!r} in a query")


def to_utc(value: datetime) -> datetime:
    """Naive UTC, as stored: an aware time is converted, a naive one is taken as UTC already."""
    if value.tzinfo is not None:
        try:
            return value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00: before year 1 in UTC
            raise InputError(f"time out of range in UTC: {value.isoformat()}") from None
    return value
