"""SQL text helpers of the query box: times, intervals, membership and the great-circle distance.

Identifiers and literals (`quote`, `literal`, `to_utc`) are `citybase.sqltext`'s, shared with the
store; they are imported here for the query modules. Query values are written into the SQL as
literals, not bound as parameters, so that a bbox or time predicate reaches the scan as a table
filter and prunes files and row groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from citybase.errors import InputError
from citybase.sqltext import literal as literal
from citybase.sqltext import quote as quote
from citybase.sqltext import to_utc as to_utc

#: Mean Earth radius (IUGG), metres: the sphere of every distance the query box returns.
EARTH_RADIUS_M = 6_371_008.8

TimeLike = datetime | date | str | np.datetime64


def parse_time(value: TimeLike | None, what: str = "time") -> datetime | None:
    """A query bound as naive UTC; strings are ISO 8601 (with or without an offset)."""
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{what} {value!r} is not an ISO 8601 time") from None
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise InputError(f"{what} must be a datetime, a date or an ISO 8601 string, not {type(value).__name__}")


_EVERY = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_UNITS = {
    "us": "microseconds",
    "ms": "milliseconds",
    "s": "seconds",
    "sec": "seconds",
    "second": "seconds",
    "seconds": "seconds",
    "m": "minutes",
    "min": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "mo": "months",
    "month": "months",
    "months": "months",
    "y": "years",
    "year": "years",
    "years": "years",
}


def interval(every: str | timedelta) -> str:
    """A bucket width as a DuckDB INTERVAL literal: "15min", "1h", "1d", "1w", "1mo" or a timedelta.

    >>> interval("15min"), interval(timedelta(hours=2))
    ("INTERVAL '15 minutes'", "INTERVAL '7200000000 microseconds'")
    """
    if isinstance(every, timedelta):
        us = every // timedelta(microseconds=1)
        if us <= 0:
            raise InputError(f"bucket width must be positive, not {every}")
        return f"INTERVAL '{us} microseconds'"
    m = _EVERY.match(every.lower())
    if not m or m.group(2) not in _UNITS or int(m.group(1)) <= 0:
        raise InputError(f"bucket width {every!r} is not like '15min', '1h', '1d', '1w' or '1mo'")
    return f"INTERVAL '{int(m.group(1))} {_UNITS[m.group(2)]}'"


def haversine(lon1: str, lat1: str, lon2: str, lat2: str) -> str:
    """SQL for the great-circle distance in metres between two lon/lat points (degrees).

    The same formula as `haversine_np`, so tests can compare exactly.
    """
    a = (
        f"(pow(sin(radians(({lat2}) - ({lat1})) / 2), 2) + cos(radians({lat1})) * cos(radians({lat2})) "
        f"* pow(sin(radians(({lon2}) - ({lon1})) / 2), 2))"
    )
    # Clamped for antipodes, where rounding can pass 1; not with least(), which drops NULLs.
    return f"(2 * {EARTH_RADIUS_M!r} * asin(sqrt(CASE WHEN {a} > 1.0 THEN 1.0 ELSE {a} END)))"


def haversine_np(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distance in metres (numpy, vectorised); see `haversine`."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlon = np.radians(np.subtract(lon2, lon1))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(1.0, a)))


#: Above this many values, `list_contains` instead of IN: DuckDB evaluates a long IN list per row
#: far slower, and statistics cannot prune on hundreds of values anyway.
LONG_LIST = 16
#: Separators a long list of text values may be written with, as one string split at plan time.
_SEPARATORS = (",", "\x1f")


def membership(column: str, values: Iterable[Any]) -> str:
    """Membership of a column in `values`, as the cheapest SQL DuckDB plans and runs.

    A long list of text values (a grant on hundreds of districts) is one string literal split at
    plan time (constant-folded to the same list): parsing and binding one literal instead of
    hundreds saves about 0.4 ms of planning in every query through the grant (share_bench.py).

    >>> print(membership("d", ["a", "b"]), membership("d", []),
    ...       membership("d", [str(i) for i in range(20)])[:40], sep=" | ")
    d IN ('a', 'b') | FALSE | list_contains(string_split('0,1,2,3,4,5,
    """
    vs = list(values)
    if not vs:
        return "FALSE"  # an empty list covers no row
    if len(vs) > LONG_LIST and all(isinstance(v, str) for v in vs):
        sep = next((c for c in _SEPARATORS if not any(c in v for v in vs)), None)
        if sep is not None:
            return f"list_contains(string_split({literal(sep.join(vs))}, {literal(sep)}), {column})"
    items = ", ".join(literal(v) for v in vs)
    return f"list_contains([{items}], {column})" if len(vs) > LONG_LIST else f"{column} IN ({items})"
