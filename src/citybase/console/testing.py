"""Helpers for testing and benchmarking the console: an app with its routes, a server in a thread.

`console_app` is the platform's app (kept as a name for the tests and the benchmark).
`Server` runs uvicorn on a free loopback port in a thread (a real server: the browser tests need
one), and `launch_chromium` starts Debian's Chromium through Playwright with the flags that work
headless and offline (FACTS.md).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from citybase.testing import free_port

if TYPE_CHECKING:
    from fastapi import FastAPI

    from citybase.platform import CityBase

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def console_app(cb: CityBase, *, background: bool = True) -> FastAPI:
    """The platform's app: `create_app` serves the console and the operations routes."""
    from citybase.api import create_app

    return create_app(cb, background=background)


class Server:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread: `with Server(app) as url: ...`."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


def must_run() -> bool:
    """On CI (CI=true) a missing browser fails the tests instead of skipping them."""
    return os.environ.get("CI", "").lower() == "true"


def launch_chromium(pw: Any) -> Any:
    """Chromium from the Debian package (no `playwright install`, which fails offline)."""
    path = CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or CHROMIUM)
    return pw.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS, headless=True)


def load_city(source: Path, root: Path) -> None:
    """Load an already simulated sample city (`citybase demo --source`) into a fresh platform root.

    A platform cannot be copied (its lake catalog holds its folder), so each test module that
    changes its platform (keys, grants, events) loads its own from the shared source files.
    """
    from typer.testing import CliRunner

    from citybase.cli.main import app

    r = CliRunner().invoke(
        app, ["demo", "--root", str(root), "--source", str(source), "--scale", "tiny", "--no-live"]
    )
    if r.exit_code != 0:
        raise RuntimeError(r.output)


def departments_and_keys(cb: CityBase, extra: tuple[str, ...] = ("urban-management",)) -> dict[str, str]:
    """Register the operator (`city`) and every dataset's department; one key each: name -> key."""
    have = {d.id for d in cb.registry.departments()}
    keys = {}
    for d in ["city", *sorted({s.department for s in cb.datasets.values()}), *extra]:
        if d not in have:
            cb.registry.add_department(d)
            have.add(d)
        keys[d] = cb.registry.issue_key(d, role="admin" if d == "city" else "member").key
    return keys
