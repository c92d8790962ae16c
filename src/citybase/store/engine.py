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
import pyarrow as pa

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
    load_aliased(con, "sqlite")
    return con


def load_aliased(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load the sqlite or postgres extension (the latter for a PostgreSQL lake catalog).

    Their files carry their alias names and cannot be loaded by path (FACTS.md);
    `duckdb_extensions` installs one into the extension directory once. postgres comes with
    the `cluster` extra (`duckdb-extension-postgres`).
    """
    try:
        con.execute(f"LOAD {name}")
    except duckdb.Error:
        import duckdb_extensions

        try:
            duckdb_extensions.import_extension(name, con=con)
        except Exception as e:
            raise MissingDependency(
                f"DuckDB's {name} extension is not installed: pip install 'citybase[cluster]'"
            ) from e
        con.execute(f"LOAD {name}")


def arrow_table(
    con: duckdb.DuckDBPyConnection, query: str, params: list[object] | dict[str, object] | None = None
) -> pa.Table:
    """The rows of a SELECT as an Arrow table, converted by DuckDB's threads as they are produced.

    `con.sql(q).to_arrow_table()` runs the query into DuckDB's Arrow collector, which builds the
    Arrow arrays in parallel; `con.execute(q).to_arrow_table()` collects DuckDB's own chunks first
    and converts them afterwards on one thread. Measured on B1 at 100M points (511k rows, 5
    columns, 2 threads): 22 ms against 34 ms (BENCHMARKS.md, session 11).

    >>> arrow_table(connect(), "SELECT ? + 1 AS n", [41]).to_pylist()
    [{'n': 42}]
    """
    return con.sql(query, params=params).to_arrow_table()
