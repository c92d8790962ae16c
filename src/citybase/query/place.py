"""Everything about one place: the rows of every dataset that fall in it, in one call.

"Block data" (DESIGN.md): each located row carries the code of its area at every level, so the
rows of a place are a key lookup in each dataset, read in one snapshot of the lake. What DuckDB
skips: files and row groups whose min/max of the place key excludes the code (rows are stored
sorted by H3 cell, so one row group covers few areas), and with a time window, other partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from citybase.errors import NotFound
from citybase.model.city import Level
from citybase.model.layout import stored_columns
from citybase.query._sql import TimeLike, literal, quote
from citybase.query.core import QueryCore
from citybase.query.scope import ReadScope, ScopeError


class PlaceReport(dict[str, pa.Table]):
    """Dataset name -> its rows in the place; `summary` (dataset, kind, rows, returned) and `place`."""

    def __init__(self, place: dict[str, Any], tables: dict[str, pa.Table], summary: pa.Table) -> None:
        super().__init__(tables)
        self.place = place
        self.summary = summary


class PlaceQueries(QueryCore):
    def about_place(
        self,
        level: str | Level,
        code: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        datasets: Iterable[str] | None = None,
        limit_per_dataset: int = 1000,
        *,
        scopes: Mapping[str, ReadScope] | None = None,
    ) -> PlaceReport:
        """Every dataset's rows in the area `code` of `level`, in `[start, end)`, most recent first.

        Datasets without a time field give their rows regardless of the window. At most
        `limit_per_dataset` rows per dataset come back; `summary.rows` counts them all. With
        `scopes`, only the datasets it names are read, each through its scope.

        >>> from citybase.query.demo import demo_engine
        >>> r = demo_engine().about_place("district", "B")
        >>> r.place["name"], r.summary.select(["dataset", "rows"]).to_pylist()
        ('East', [{'dataset': 'air', 'rows': 3}, {'dataset': 'pings', 'rows': 20}])
        """
        lv = self.place_level(level)
        if not self.has_layer(lv):
            raise NotFound(f"the city has no {lv} layer")
        explicit = datasets is not None
        names = sorted(datasets) if datasets is not None else sorted(self.lake.datasets)
        tables: dict[str, pa.Table] = {}
        rows: list[dict[str, Any]] = []
        with self.cursor() as cur:
            # One snapshot of the lake for every dataset.
            cur.execute("BEGIN TRANSACTION")
            found = cur.execute(
                f"SELECT code, name FROM lake.{quote('place_' + lv)} WHERE code = {literal(code)} LIMIT 1"
            ).fetchone()
            if found is None:
                cur.execute("ROLLBACK")
                raise NotFound(f"no {lv} with code {code!r}")
            for name in names:
                spec = self.spec(name)
                if lv not in {c for c, _, _ in stored_columns(spec)}:
                    continue
                if scopes is not None and name not in scopes:
                    if explicit:
                        raise ScopeError(f"dataset {name!r} is outside the reader's scope")
                    continue
                src = self.source(name, None if scopes is None else scopes[name])
                if not src.has(lv):
                    if explicit:
                        src.need(lv)
                    continue
                where = [f"{quote(lv)} = {literal(code)}"]
                order = ""
                if spec.time_field is not None and src.has(spec.time_field):
                    where += self.time_where(src, start, end)
                    order = f" ORDER BY {quote(spec.time_field)} DESC"
                w = " AND ".join(where)
                count = cur.execute(f"SELECT count(*) FROM {src.sql} AS s WHERE {w}").fetchone()
                total = int(count[0]) if count else 0
                t = cur.execute(
                    f"SELECT * FROM {src.sql} AS s WHERE {w}{order} LIMIT {int(limit_per_dataset)}"
                ).to_arrow_table()
                tables[name] = t
                rows.append({"dataset": name, "kind": spec.kind.value, "rows": total, "returned": t.num_rows})
            cur.execute("ROLLBACK")
        summary = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("dataset", pa.string()),
                    ("kind", pa.string()),
                    ("rows", pa.int64()),
                    ("returned", pa.int64()),
                ]
            ),
        )
        place = {"level": lv, "code": found[0], "name": found[1]}
        return PlaceReport(place, tables, summary)
