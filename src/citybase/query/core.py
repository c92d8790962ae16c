"""The engine's core: a dataset as a scoped SQL relation, and running SQL on a read cursor.

Every query is one DuckDB statement (or a few, for the growing searches of nearest neighbours)
over `source(...)`, the dataset's table with the reader's scope applied inside it:

    (SELECT <visible columns, masks applied> FROM lake."<dataset>"
     WHERE (<row filter>) AND <pruning hints>)

Pruning hints are predicates on stored columns that the query's own predicates imply (an H3 id
range around a box, computed here); they never change the answer, only what DuckDB reads. With
several disjoint id ranges the relation becomes a UNION ALL of one scan per range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
from shapely.geometry.base import BaseGeometry

from citybase.errors import InputError
from citybase.model.city import DEFAULT_H3_RESOLUTION, Level
from citybase.model.dataset import DatasetSpec, FieldType
from citybase.model.layout import H3, PLACE_KEYS, shadow_columns, stored_columns, stores_shape
from citybase.places.city import City
from citybase.query._sql import TimeLike, literal, membership, parse_time, quote, to_utc
from citybase.query.prune import BBox, cover_ranges
from citybase.query.scope import OPEN, ReadScope, ScopeError
from citybase.store.by_object import Copies
from citybase.store.engine import arrow_table
from citybase.store.files import DirectFiles, DirectScan
from citybase.store.lake import Lake


@dataclass(frozen=True)
class Source:
    """A dataset as one reader sees it: a parenthesised SQL relation and its visible columns."""

    spec: DatasetSpec
    sql: str
    columns: tuple[str, ...]
    masked: frozenset[str]

    def has(self, column: str) -> bool:
        return column in self.columns

    def raw(self, column: str) -> bool:
        """Visible with its stored value (not masked): predicates on it can prune the scan."""
        return column in self.columns and column not in self.masked

    def need(self, *columns: str | None) -> None:
        """Fail with ScopeError if the query needs a column this reader may not see."""
        hidden = [c for c in columns if c is not None and c not in self.columns]
        if hidden:
            raise ScopeError(
                f"the query needs column(s) {hidden} of {self.spec.name!r}, outside the reader's scope"
            )

    @property
    def shapes(self) -> bool:
        """True for areas datasets (rows keep a geometry, `geom`, with its bbox columns)."""
        return stores_shape(self.spec)


#: The shortest span of each time partition (`QueryCore.window_table`).
_PARTITION_SPAN = {"day": timedelta(days=1), "month": timedelta(days=28), "year": timedelta(days=365)}


class QueryCore:
    """Holds the lake and the city; builds scoped sources and runs SQL. Subclassed by the query mixins."""

    def __init__(self, lake: Lake, city: City | None = None) -> None:
        self.lake = lake
        self.city = city
        #: Per dataset, the radius that last answered a nearest-neighbour search (nearest.py).
        self.radius_hints: dict[str, float] = {}
        #: Direct reads of complete Parquet files, for the latency-critical queries (store/files.py).
        self.files = DirectFiles(lake)
        #: Reads through the datasets' copies sorted by object, for tracks (store/by_object.py).
        self.copies = Copies(lake)

    # -- what is stored -----------------------------------------------------------------------

    @property
    def h3_resolution(self) -> int:
        """The resolution of the stored `h3` cell key."""
        return self.city.h3_resolution if self.city is not None else DEFAULT_H3_RESOLUTION

    def spec(self, dataset: str) -> DatasetSpec:
        return self.lake.spec(dataset)

    def has_layer(self, level: str) -> bool:
        return self.city is not None and any(lv.value == level for lv in self.city.layers)

    # -- sources ------------------------------------------------------------------------------

    def source(
        self,
        dataset: str,
        scope: ReadScope | None = None,
        *,
        where: Sequence[str] = (),
        branches: Sequence[str] = (),
        table: str | None = None,
        span: tuple[datetime, datetime] | None = None,
    ) -> Source:
        """The dataset as a scoped relation; `where` and `branches` are pruning hints on stored columns.

        `where` predicates are ANDed; `branches` are alternatives read as a UNION ALL (they must be
        disjoint). Both come from the engine, never from a reader. `table` replaces the lake table
        by another relation with the same rows (store/files.py); `span` is the earliest and latest
        time of every row in `table` (none missing): the scope's time window is not tested where
        it holds all of them.

        >>> from citybase.query.demo import demo_engine
        >>> scope = ReadScope(fields=["station", "pm25"], row_filter="station = 'west'",
        ...                   masked={"pm25": "round(pm25, -1)"})
        >>> print(demo_engine().source("air", scope).sql)
        (SELECT "station", (round(pm25, -1)) AS "pm25" FROM lake."air" WHERE (station = 'west'))
        """
        spec = self.spec(dataset)
        scope = scope or OPEN
        stored = [n for n, _, _ in stored_columns(spec)]
        visible = stored if scope.fields is None else list(dict.fromkeys(scope.fields))
        unknown = sorted({*visible, *scope.masked, *scope.places} - set(stored))
        if unknown:
            raise InputError(f"the scope names column(s) {unknown} that dataset {dataset!r} does not have")
        select = ", ".join(self._column_sql(spec, scope, c) for c in visible)
        conds = [f"({scope.row_filter})"] if scope.row_filter else []
        conds += [membership(quote(lv), codes) for lv, codes in sorted(scope.places.items())]
        conds += self._window_sql(spec, scope, span)
        conds += list(where)
        table = table or self.lake.table(dataset)
        parts = []
        for branch in list(branches) or [""]:
            cs = [*conds, branch] if branch else conds
            w = f" WHERE {' AND '.join(cs)}" if cs else ""
            parts.append(f"SELECT {select} FROM {table}{w}")
        return Source(spec, "(" + " UNION ALL ".join(parts) + ")", tuple(visible), frozenset(scope.masked))

    @staticmethod
    def _window_sql(spec: DatasetSpec, scope: ReadScope, span: tuple[datetime, datetime] | None) -> list[str]:
        """The scope's time window as conditions, none where `span` lies inside it."""
        if scope.start is None and scope.end is None:
            return []
        if spec.time_field is None:
            raise InputError(f"dataset {spec.name!r} has no time field for the scope's time window")
        t0 = None if scope.start is None else to_utc(scope.start)
        t1 = None if scope.end is None else to_utc(scope.end)
        if span is not None and (t0 is None or span[0] >= t0) and (t1 is None or span[1] < t1):
            return []
        col = quote(spec.time_field)
        return [f"{col} {op} {literal(t)}" for op, t in ((">=", t0), ("<", t1)) if t is not None]

    def _column_sql(self, spec: DatasetSpec, scope: ReadScope, column: str) -> str:
        """One visible column as the reader reads it: as stored, its shadow column, or its mask."""
        if column not in scope.masked:
            return quote(column)
        shadow = scope.shadows.get(column)
        if shadow is not None:
            if shadow_columns(spec).get(column) != shadow:
                raise InputError(f"{shadow!r} is not the shadow column of {spec.name}.{column}")
            if shadow in self.lake.columns(spec.name):
                return f"{quote(shadow)} AS {quote(column)}"
        return f"({scope.masked[column]}) AS {quote(column)}"

    def window_table(self, dataset: str, start: TimeLike | None, end: TimeLike | None) -> str | None:
        """The relation a query narrowed by a time window alone reads best: the dataset's copy by
        object (store/by_object.py), whose row groups each hold one day, where the window is
        shorter than the table's time partitions, whose rows are sorted by place, so that a window
        skips nothing inside them. None (the table) otherwise, or where there is no copy.

        >>> from citybase.query.demo import demo_engine
        >>> demo_engine().window_table("pings", "2024-05-01", "2024-05-02") is None  # not maintained
        True
        """
        t0, t1 = parse_time(start, "start"), parse_time(end, "end")
        if t0 is None or t1 is None:
            return None
        span = _PARTITION_SPAN.get(self.spec(dataset).partition)  # (none: one partition)
        if span is not None and t1 - t0 >= span:
            return None
        with self.cursor() as cur:
            return self.copies.relation(cur, dataset)

    def spatial_source(
        self,
        dataset: str,
        scope: ReadScope | None,
        area: BaseGeometry | BBox | None,
        *,
        where: Sequence[str] = (),
        table: str | None = None,
        span: tuple[datetime, datetime] | None = None,
    ) -> Source:
        """A source read through H3 id ranges around `area`, when that is sound for this reader.

        Sound when the reader sees lon/lat unmasked (so the query's exact test is on the stored
        position, from which `h3` was computed) and the rows are points (an area's `h3` is the
        cell of one point on it, and says nothing about where the rest of it lies).
        """
        plain = self.source(dataset, scope, where=where, table=table, span=span)
        if area is None or plain.shapes or not (plain.raw("lon") and plain.raw("lat")):
            return plain
        if H3 not in {n for n, _, _ in stored_columns(plain.spec)}:
            return plain
        ranges = cover_ranges(area, self.h3_resolution)
        if not ranges:
            return plain
        branches = [r.sql(quote(H3)) for r in ranges]
        return self.source(dataset, scope, where=where, branches=branches, table=table, span=span)

    def narrow(
        self,
        cur: duckdb.DuckDBPyConnection,
        direct: DirectScan,
        scope: ReadScope | None,
        box: BBox | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> DirectScan:
        """The files of `direct` (store/files.py) that a query in `box` (on lon/lat) and
        [start, end) (on the time field) may need.

        The box and the window narrow the files only where the reader sees the column as stored
        (a masked value may lie outside the stored one's bounds); the scope's own window narrows
        them too.
        """
        probe = self.source(direct.dataset, scope)
        scope = scope or OPEN
        tf = probe.spec.time_field
        if scope.start is not None:
            start = max(start, to_utc(scope.start)) if start is not None else to_utc(scope.start)
        if scope.end is not None:
            end = min(end, to_utc(scope.end)) if end is not None else to_utc(scope.end)
        located = box is not None and not probe.shapes and probe.raw("lon") and probe.raw("lat")
        timed = tf is not None and probe.raw(tf) and (start is not None or end is not None)
        return direct.subset(cur, box if located else None, (tf, start, end) if timed and tf else None)

    def window_span(
        self, cur: duckdb.DuckDBPyConnection, direct: DirectScan | None, scope: ReadScope | None
    ) -> tuple[datetime, datetime] | None:
        """The time span of the files read, when the scope has a time window to skip (`source`)."""
        if direct is None or scope is None or (scope.start is None and scope.end is None):
            return None
        tf = self.spec(direct.dataset).time_field
        return direct.span(cur, tf) if tf is not None else None

    def run_on_files(
        self,
        dataset: str,
        scope: ReadScope | None,
        sql: Callable[[str | None, tuple[datetime, datetime] | None], str],
        box: BBox | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """Run `sql(table, span)` on the dataset's files narrowed to `box` and [start, end)
        (`narrow`), read directly; through DuckLake (`sql(None, None)`) when they cannot be, or
        when a file went away under the query (the lake was compacted)."""
        with self.cursor() as cur:
            direct = self.files.scan(cur, dataset)
            if direct is not None:
                direct = self.narrow(cur, direct, scope, box, start, end)
                try:
                    return arrow_table(cur, sql(direct.sql, self.window_span(cur, direct, scope)))
                except duckdb.IOException:
                    self.files.forget(dataset)
            return arrow_table(cur, sql(None, None))

    # -- common predicates --------------------------------------------------------------------

    def time_where(self, src: Source, start: TimeLike | None, end: TimeLike | None) -> list[str]:
        """`start <= time < end` on the dataset's time field; [] when both are None."""
        t0, t1 = parse_time(start, "start"), parse_time(end, "end")
        if t0 is None and t1 is None:
            return []
        tf = src.spec.time_field
        if tf is None:
            raise InputError(f"dataset {src.spec.name!r} has no time field; a time window does not apply")
        src.need(tf)
        if t0 is not None and t1 is not None and t1 < t0:
            raise InputError(f"the time window ends ({t1}) before it starts ({t0})")
        col = quote(tf)
        out = []
        if src.spec.field(tf).type is FieldType.date:
            # A date d is in [start, end) when midnight of d is: compare dates, so statistics prune.
            if t0 is not None:
                out.append(f"{col} >= {literal(_ceil_date(t0).date())}")
            if t1 is not None:
                out.append(f"{col} < {literal(_ceil_date(t1).date())}")
            return out
        if t0 is not None:
            out.append(f"{col} >= {literal(t0)}")
        if t1 is not None:
            out.append(f"{col} < {literal(t1)}")
        return out

    @staticmethod
    def place_level(level: str | Level) -> str:
        lv = level.value if isinstance(level, Level) else str(level)
        if lv not in PLACE_KEYS:
            raise InputError(f"place level {lv!r} is not one of {', '.join(PLACE_KEYS)}")
        return lv

    # -- running ------------------------------------------------------------------------------

    @contextmanager
    def cursor(self, *, late_materialization: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read cursor of its own (its own transactions), closed after use."""
        cur = self.lake.cursor()
        try:
            # Parquet footers are parsed once and kept: lake files are immutable.
            cur.execute("SET parquet_metadata_cache = true")
            if not late_materialization:
                # For a top-k of a few pruned row groups, DuckDB's rewrite into a second scan joined
                # by row id costs more (a second pass over the lake's metadata) than it saves.
                cur.execute("SET disabled_optimizers = 'late_materialization'")
            yield cur
        finally:
            cur.close()

    def run(self, sql: str, *, late_materialization: bool = True) -> pa.Table:
        with self.cursor(late_materialization=late_materialization) as cur:
            return arrow_table(cur, sql)


def _ceil_date(t: datetime) -> datetime:
    day = datetime(t.year, t.month, t.day)
    return day if day == t else day + timedelta(days=1)
