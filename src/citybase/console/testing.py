"""Helpers for testing and benchmarking the console: an app with its routes, a server in a thread.

`console_app` is the platform's app (kept as a name for the tests and the benchmark); a real
server for it is `citybase.testing.serving`, and `launch_chromium` starts Debian's Chromium
through Playwright with the flags that work headless and offline (FACTS.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
