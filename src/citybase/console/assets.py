"""Where the console's files come from: its own `static/` folder, and MapLibre GL JS from PyPI.

Nothing is fetched from a CDN: MapLibre GL JS (UMD build, worker inlined) and its stylesheet come
from the installed `maplibre` package (`maplibre/srcjs/`). The package is located without being
imported: importing it pulls its notebook widgets and logs warnings about optional frameworks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from citybase.errors import MissingDependency, NotFound

STATIC = Path(__file__).parent / "static"
#: Public name -> file inside the `maplibre` package's srcjs folder.
VENDOR = {"maplibre-gl.js": "maplibre-gl.js", "maplibre-gl.css": "maplibre-gl.css"}


def static_file(name: str) -> Path:
    """One of the console's own files (no sub-folders, no way out of `static/`)."""
    path = STATIC / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"no console file {name!r}")
    return path


def vendor_dir() -> Path:
    """The `maplibre` package's folder of JavaScript and CSS files."""
    spec = importlib.util.find_spec("maplibre")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("the console needs MapLibre GL JS: pip install maplibre==0.3.6")
    return Path(next(iter(spec.submodule_search_locations))) / "srcjs"


def vendor_file(name: str) -> Path:
    """MapLibre GL JS or its stylesheet, from the installed package."""
    if name not in VENDOR:
        raise NotFound(f"no vendored file {name!r}")
    path = vendor_dir() / VENDOR[name]
    if not path.is_file():
        raise MissingDependency(f"{path} is missing: pip install maplibre==0.3.6")
    return path
