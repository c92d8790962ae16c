"""The platform's error messages: one shape for every invalid declaration, and no 500 for input
that only fails after conversion."""

from __future__ import annotations

import doctest
import importlib
from datetime import datetime, timedelta, timezone

import pytest

from citybase.errors import InputError
from citybase.sqltext import literal


@pytest.mark.parametrize("module", ["citybase.errors", "citybase.sqltext"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_time_outside_the_utc_range_is_an_input_error() -> None:
    """Found by schemathesis: 0001-01-01T00:00+01:00 is before year 1 in UTC (was a 500)."""
    with pytest.raises(InputError, match="out of range"):
        literal(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(InputError, match="out of range"):
        literal(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))))
    assert literal(datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == (
        "TIMESTAMP '2026-01-01 00:00:00.000000'"
    )
