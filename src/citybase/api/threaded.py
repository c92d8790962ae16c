"""Serve an ASGI app with uvicorn in a thread of this process.

For whoever needs the real server beside other work in one process: the demo (server and live
simulation together), tests that drive it from other processes or a browser. The app's lifespan
runs, so its background services start and stop with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from citybase.errors import InputError


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 8000, timeout: float = 30
) -> Iterator[str]:
    """Start uvicorn on host:port in a daemon thread; yield its base URL; stop it on exit."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, limit_concurrency=1000)
    )
    thread = threading.Thread(target=server.run, name="citybase-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise InputError(f"the server did not start on {host}:{port} (is the port in use?)")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
