"""DuckDB connections with the spatial, DuckLake and SQLite extensions, loaded offline.

DuckDB's `INSTALL` downloads at run time; the extensions come instead from their PyPI packages
(pinned to our DuckDB), loaded by file path or installed into a private extension directory.
Autoinstall is off so that a missing extension fails loudly instead of trying the network.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import duckdb

from citybase.errors import MissingDependency


def _extension_file(package: str, name: str) -> str:
    try:
        mod = __import__(package)
    except ImportError as e:  # pragma: no cover - the core dependencies include them
        raise MissingDependency(
            f"DuckDB extension package {package!r} is missing: pip install citybase"
        ) from e
    files = glob.glob(
        os.path.join(os.path.dirname(str(mod.__file__)), "extensions", "*", f"{name}.duckdb_extension")
    )
    if not files:  # pragma: no cover
        raise MissingDependency(f"{package} has no {name}.duckdb_extension file")
    return files[0]


def connect(
    path: str | Path = ":memory:",
    *,
    threads: int | None = None,
    memory_limit: str | None = None,
    extension_dir: str | Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with spatial and DuckLake loaded, and SQLite catalogs available.

    >>> con = connect()
    >>> con.execute("SELECT ST_AsText(ST_Point(116.4, 39.9))").fetchone()[0]
    'POINT (116.4 39.9)'
    """
    ext_dir = (
        Path(extension_dir) if extension_dir else Path.home() / ".cache" / "citybase" / "duckdb-extensions"
    )
    ext_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": str(ext_dir),
    }
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(str(path), config=config)
    # Progress is ours to show (the CLI's bars); DuckDB's own bar would print into servers' logs.
    con.execute("SET enable_progress_bar = false")
    con.execute(f"LOAD '{_extension_file('duckdb_extension_spatial', 'spatial')}'")
    con.execute(f"LOAD '{_extension_file('duckdb_extension_ducklake', 'ducklake')}'")
    try:
        con.execute("LOAD sqlite")
    except duckdb.Error:
        # The sqlite extension's file carries its alias name and cannot be loaded by path
        # (FACTS.md); `duckdb_extensions` installs it into the extension directory once.
        import duckdb_extensions

        duckdb_extensions.import_extension("sqlite", con=con)
        con.execute("LOAD sqlite")
    return con
