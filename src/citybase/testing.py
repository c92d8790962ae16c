"""Helpers for tests of citybase and of connectors written for it."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_ENV = "CITYBASE_SHARED_DATA"


def shared_data() -> Path | None:
    """The real third-party data folder (../shared/data from the checkout), or None if absent."""
    env = os.environ.get(SHARED_ENV)
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" for p in here.parents]
    for c in candidates:
        if c.is_dir():
            return c
    return None
