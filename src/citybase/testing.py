"""Helpers for tests of citybase and of connectors written for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from citybase.ports import free_port

__all__ = ["free_port", "serving", "shared_data"]

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


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1 at a free port; yields its base URL.

    For tests that need a real socket (clients in other processes, a browser, the live
    simulation); the app's lifespan runs, so background services start and stop with it.
    """
    from citybase.api.threaded import serve_in_thread

    with serve_in_thread(app, port=port or free_port()) as url:
        yield url
