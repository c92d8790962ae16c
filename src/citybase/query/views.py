"""SQL over the city: every dataset as a view `city.<dataset>`, with a `geometry` column.

`QueryEngine.sql(query)` runs DuckDB SQL (with the spatial extension) in which

- `city.<dataset>` is the dataset as the reader sees it (its scope applied), plus `geometry`:
  `ST_Point(lon, lat)` for located rows, the shape (`geom`) for areas datasets;
- `city.place_<level>` is the city's layer of that level: code, name, parent, geometry.

    SELECT d.name, count(*) FROM city.hotline AS h
    JOIN city.place_district AS d ON ST_Contains(d.geometry, h.geometry) GROUP BY ALL

How: `city` is a schema of views shared by every cursor, each reading a temporary view
(`temp.main._city_<dataset>`) that exists only in the cursor running the query and holds that
reader's scoped relation. So two readers with different scopes can run at once.

Without `scopes` the caller is trusted: any SQL runs, and the lake's own tables (`lake.<dataset>`)
are reachable too. With `scopes` (dataset -> ReadScope, from the share box), the query must be one
SELECT that reads only `city.<dataset>` views of the datasets given, `city.place_<level>` views
and its own CTEs: no table functions (`read_parquet`, `query`, ...), no other schema. DuckDB's own
parser (`json_serialize_sql`) says what the query reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from citybase.errors import InputError
from citybase.query._sql import quote
from citybase.query.core import QueryCore
from citybase.query.scope import ReadScope, ScopeError
from citybase.store.engine import arrow_table

SCHEMA = "city"
#: The lake connection's own (in-memory) database, which holds the `city` schema (store/engine.py).
HOME = "memory"
_views_lock = threading.Lock()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def referenced_tables(
    cur: duckdb.DuckDBPyConnection, query: str
) -> tuple[list[tuple[str, str, str]], set[str], bool]:
    """(catalog, schema, table) of every table the SELECT reads, its CTE names, and whether it
    calls a table function. Raises InputError when the text is not a single SELECT."""
    row = cur.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True, "error_message": "no answer"}
    if tree.get("error"):
        raise InputError(f"only a single SELECT is allowed here: {tree.get('error_message', '')}")
    if len(tree.get("statements", [])) != 1:
        raise InputError("only a single SELECT is allowed here")
    tables: list[tuple[str, str, str]] = []
    ctes: set[str] = set()
    table_function = False
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            tables.append(
                (node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", ""))
            )
        elif kind == "TABLE_FUNCTION":
            table_function = True
        if "cte_map" in node:
            for entry in node["cte_map"].get("map", []):
                ctes.add(entry["key"])
    return tables, ctes, table_function


class SqlQueries(QueryCore):
    def sql(self, query: str, *, scopes: Mapping[str, ReadScope] | None = None) -> pa.Table:
        """Run SQL in which `city.<dataset>` views (with `geometry`) and `city.place_<level>` exist.

        >>> from citybase.query.demo import demo_engine
        >>> demo_engine().sql(
        ...     "SELECT d.code, count(*) AS n FROM city.pings AS p JOIN city.place_district AS d "
        ...     "ON ST_Intersects(d.geometry, p.geometry) GROUP BY ALL ORDER BY 1").to_pylist()
        [{'code': 'A', 'n': 4}, {'code': 'B', 'n': 20}]
        """
        with self.cursor() as cur:
            select = True
            try:
                tables, ctes, table_function = referenced_tables(cur, query)
            except InputError:
                if scopes is not None:
                    raise
                # A trusted caller may run any statement; it gets every view.
                select = False
                tables, ctes, table_function = [("", SCHEMA, n) for n in self.lake.datasets], set(), False
            wanted = self._check(tables, ctes, table_function, scopes)
            self._make_views(cur, wanted, scopes)
            return arrow_table(cur, query) if select else cur.execute(query).to_arrow_table()

    def _check(
        self,
        tables: list[tuple[str, str, str]],
        ctes: set[str],
        table_function: bool,
        scopes: Mapping[str, ReadScope] | None,
    ) -> set[str]:
        """The datasets whose views the query reads; with scopes, refuse anything else it reads."""
        datasets = self.lake.datasets
        wanted = set()
        for catalog, schema, table in tables:
            is_city = schema == SCHEMA and catalog in ("", HOME)
            if is_city and table in datasets:
                if scopes is not None and table not in scopes:
                    raise ScopeError(f"dataset {table!r} is outside the reader's scope")
                wanted.add(table)
            elif is_city and table.startswith("place_"):
                continue
            elif scopes is not None and not (catalog == "" and schema == "" and table in ctes):
                name = ".".join(p for p in (catalog, schema, table) if p)
                raise ScopeError(f"{name!r} is not readable here: read city.<dataset> views only")
        if scopes is not None and table_function:
            raise ScopeError("table functions are not allowed here: read city.<dataset> views only")
        return wanted

    def _make_views(
        self, cur: duckdb.DuckDBPyConnection, datasets: set[str], scopes: Mapping[str, ReadScope] | None
    ) -> None:
        for name in sorted(datasets):
            src = self.source(name, None if scopes is None else scopes[name])
            if src.shapes and src.has("geom"):
                geometry = ', "geom" AS geometry'
            elif src.has("lon") and src.has("lat"):
                geometry = ', ST_Point("lon", "lat") AS geometry'
            else:
                geometry = ""
            cur.execute(
                f"CREATE TEMP VIEW {quote('_city_' + name)} AS SELECT *{geometry} FROM {src.sql} AS s"
            )
        with _views_lock:
            shared = {
                r[0]
                for r in cur.execute(
                    "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = ?",
                    [HOME, SCHEMA],
                ).fetchall()
            }
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {HOME}.{SCHEMA}")
            for name in sorted(datasets - shared):
                cur.execute(
                    f"CREATE VIEW IF NOT EXISTS {HOME}.{SCHEMA}.{quote(name)} AS "
                    f"SELECT * FROM temp.main.{quote('_city_' + name)}"
                )
            if self.city is not None:
                for level in self.city.layers:
                    view = f"place_{level.value}"
                    if view not in shared:
                        cur.execute(
                            f"CREATE OR REPLACE VIEW {HOME}.{SCHEMA}.{quote(view)} AS "
                            f"SELECT code, name, parent, geom AS geometry FROM lake.{quote(view)}"
                        )
