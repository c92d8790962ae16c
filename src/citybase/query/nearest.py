"""B4 and B8: nearest neighbours by great-circle distance, found in growing circles.

B4 `nearest` asks DuckDB for the k closest rows within a radius r, reading only the box around the
circle (prune.circle_bbox) through the H3 id range that covers it (prune.py): a few row groups
per file. If k rows lie within r, no row outside the circle can be closer, so the answer is
complete; otherwise r grows (by the density seen so far) and the search repeats, and after
`MAX_RINGS` circles it becomes one full scan (DuckDB's top-k). The radius that answered last is
remembered per dataset as the next search's first guess. The circles read the dataset's Parquet
files directly while they hold all its rows (store/files.py), skipping DuckLake's catalog round trips.

B8 `nearest_join` does the same for many events at once (or, with a time tolerance that leaves few
positions per event, one join on the time band alone): each pass joins the events still short of k
neighbours to the objects in a box around each (DuckDB spatial's join of the boxes and the
positions; with a time tolerance, a hash join on time buckets, the box as a filter), keeps the
complete ones, and grows each remaining event's radius by the neighbours it found; what is left
after the last pass is joined with no distance band. The first radius is the one whose circle holds
a few dozen positions per neighbour, at the objects' density around the events (in the time band).
Its cost follows the number of object positions within each event's k-th object: for tracks, every
position of the nearer objects.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from citybase.errors import InputError
from citybase.query._sql import EARTH_RADIUS_M, TimeLike, haversine, interval, literal, parse_time, quote
from citybase.query.core import QueryCore, Source
from citybase.query.prune import circle_bbox
from citybase.query.scope import ReadScope
from citybase.store.engine import arrow_table

#: First radius of a B4 search with no history, and of B8's where no density is known, metres.
FIRST_RADIUS_M = 250.0
#: Positions per neighbour wanted in B8's first circles (`_dense_radius`).
FIRST_POSITIONS = 32
#: Circles tried before a full scan.
MAX_RINGS = 8
#: Passes of the batched join before the remaining events are joined with no distance band.
MAX_PASSES = 8
#: With a time tolerance, at most this many (event, position) pairs in the time bands are joined
#: at once, without growing circles. A circle's pass only tests boxes on the pairs of its time
#: buckets; the one join computes a distance and a group for every pair, about 0.35 us each. With
#: first circles sized by density, circles won at every scale of st_bench B8 (+-5 min, session 8):
#: 1M GPS points (0.3M pairs) 0.15 s against 0.18 s in one join, 3M 0.16 s against 0.37 s, 10M
#: 0.21 s against 1.11 s. Below this the join costs a few tens of ms, less than the passes' queries.
TIME_BAND_PAIRS = 200_000
#: A circle this large is the whole world.
WORLD_M = math.pi * EARTH_RADIUS_M


class Bands(NamedTuple):
    """The events' time bands (`NearestQueries._bands`)."""

    events: int
    lo: Any
    hi: Any
    share: float


def _grow(radius: float, found: int, k: int) -> float:
    """The next radius: enough for k at the density seen so far (x1.5 margin), 2x to 16x larger."""
    if found == 0:
        return radius * 4
    return radius * min(16.0, max(2.0, 1.5 * math.sqrt(k / found)))


class NearestQueries(QueryCore):
    def nearest(
        self,
        dataset: str,
        lon: float,
        lat: float,
        k: int = 1,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        max_distance_m: float | None = None,
        scope: ReadScope | None = None,
    ) -> pa.Table:
        """B4: the k rows nearest to (lon, lat), with `distance_m` (great circle), nearest first.

        Only rows in `[start, end)` when given, and within `max_distance_m` when given (then fewer
        than k rows may come back). Ties at the k-th distance are broken arbitrarily.

        >>> from citybase.query.demo import demo_engine
        >>> t = demo_engine().nearest("pings", 116.42, 39.96, k=2)
        >>> [round(d) for d in t.column("distance_m").to_pylist()]
        [0, 556]
        """
        if k < 1:
            raise InputError(f"k must be at least 1, not {k}")
        x, y = float(lon), float(lat)
        if not (-180 <= x <= 180 and -90 <= y <= 90):
            raise InputError(f"({lon}, {lat}) is not a lon/lat position")
        probe = self.source(dataset, scope)
        probe.need("lon", "lat")
        when = self.time_where(probe, start, end)
        dist = haversine(literal(x), literal(y), '"lon"', '"lat"')
        limit = WORLD_M if max_distance_m is None else float(max_distance_m)
        hints = self.radius_hints
        radius = min(hints.get(dataset, FIRST_RADIUS_M), limit)
        # With masked coordinates the box cannot prune: one scan answers at once.
        rings = MAX_RINGS if probe.raw("lon") and probe.raw("lat") else 0
        with self.cursor(late_materialization=False) as cur:
            direct = self.files.scan(cur, dataset) if rings else None
            t0, t1 = parse_time(start, "start"), parse_time(end, "end")
            for _ in range(rings):
                box = circle_bbox(x, y, radius)
                x0, y0, x1, y1 = (literal(v) for v in box)
                where = [f'"lon" BETWEEN {x0} AND {x1}', f'"lat" BETWEEN {y0} AND {y1}', *when]
                try:
                    files = self.narrow(cur, direct, scope, box, t0, t1) if direct is not None else None
                    span = self.window_span(cur, files, scope)
                    table = files.sql if files is not None else None
                    src = self.spatial_source(dataset, scope, box, table=table, span=span)
                    got = self._closest(cur, src, dist, where, radius, k)
                except duckdb.IOException:
                    if direct is None:
                        raise
                    # A file went away (the lake was compacted): read through DuckLake from now on.
                    self.files.forget(dataset)
                    direct = None
                    got = self._closest(cur, self.spatial_source(dataset, scope, box), dist, where, radius, k)
                if got.num_rows == k or radius >= limit:
                    if got.num_rows == k:
                        kth = got.column("distance_m")[k - 1].as_py()
                        hints[dataset] = max(1.5 * kth, 10.0)
                    return got
                radius = min(_grow(radius, got.num_rows, k), limit)
        with self.cursor() as cur:
            return self._closest(cur, probe, dist, when, None if max_distance_m is None else limit, k)

    @staticmethod
    def _closest(
        cur: duckdb.DuckDBPyConnection, src: Source, dist: str, where: list[str], radius: float | None, k: int
    ) -> pa.Table:
        conds = [*where, f"distance_m <= {literal(radius)}"] if radius is not None else where
        w = f" WHERE {' AND '.join(conds)}" if conds else ""
        return cur.execute(
            f"SELECT * FROM (SELECT *, {dist} AS distance_m FROM {src.sql} AS s) AS d{w} "
            f"ORDER BY distance_m LIMIT {int(k)}"
        ).to_arrow_table()

    def nearest_join(
        self,
        events: str,
        objects: str,
        k: int = 1,
        max_distance_m: float | None = None,
        time_tolerance: str | timedelta | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        scope: ReadScope | None = None,
        objects_scope: ReadScope | None = None,
    ) -> pa.Table:
        """B8: for each event (in `[start, end)`), its k nearest objects, with `distance_m` and `rank`.

        An object is a distinct `object_field` value of `objects` (each row, when it declares
        none): its nearest position counts, and with `time_tolerance` only positions within
        +-tolerance of the event's time. One row per (event, neighbour): the event's columns,
        `_event` (its number), `rank` (1 = nearest), `distance_m`, and the object's columns
        prefixed `object_`; an event with no neighbour (beyond `max_distance_m`) keeps one row with
        nulls. `scope` applies to the events, `objects_scope` to the objects.

        >>> from citybase.query.demo import demo_engine
        >>> t = demo_engine().nearest_join("air", "pings", k=1)
        >>> t.select(["station", "object_vehicle", "rank"]).to_pylist()[0]
        {'station': 'east', 'object_vehicle': 'a', 'rank': 1}
        """
        if k < 1:
            raise InputError(f"k must be at least 1, not {k}")
        ev = self.source(events, scope)
        ob = self.source(objects, objects_scope)
        ev.need("lon", "lat")
        ob.need("lon", "lat")
        tol = None
        if time_tolerance is not None:
            etf, otf = ev.spec.time_field, ob.spec.time_field
            if etf is None or otf is None:
                raise InputError("a time tolerance needs a time field in both datasets")
            ev.need(etf)
            ob.need(otf)
            tol = (interval(time_tolerance), quote(etf), quote(otf))
        obj_key = ob.spec.object_field
        if obj_key is not None:
            ob.need(obj_key)
        ev_where = ['"lon" IS NOT NULL', '"lat" IS NOT NULL', *self.time_where(ev, start, end)]
        with self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            cur.execute(
                "CREATE TEMP TABLE _ev AS SELECT row_number() OVER () - 1 AS _event, * "
                f"FROM {ev.sql} AS s WHERE {' AND '.join(ev_where)}"
            )
            cur.execute(
                "CREATE TEMP TABLE _hits AS SELECT 0::BIGINT AS _event, 0::BIGINT AS rank, "
                f"0.0::DOUBLE AS distance_m, * FROM {ob.sql} AS s LIMIT 0"
            )
            # The time band alone leaves few pairs: one join on it is exact and cheapest.
            bands = self._bands(cur, tol) if tol is not None and max_distance_m is None else None
            band = tol is not None and bands is not None and self._few_in_time(cur, ob, tol, bands)
            if max_distance_m is not None:
                first = float(max_distance_m)
            else:
                first = WORLD_M if band else self._dense_radius(cur, ob, k, tol, bands)
            # Each event searches its own circle, grown by the neighbours it found so far.
            cur.execute(f"CREATE TEMP TABLE _todo AS SELECT _event, {first!r}::DOUBLE AS r FROM _ev")
            if band:
                self._join_pass(cur, ob, obj_key, tol, False, k, True)
            for p in range(MAX_PASSES + 1):
                left = cur.execute("SELECT count(*), max(r) FROM _todo").fetchone()
                if not left or not left[0]:
                    break
                final = max_distance_m is not None or p == MAX_PASSES or left[1] >= WORLD_M
                banded = max_distance_m is not None or not final
                self._join_pass(cur, ob, obj_key, tol, banded, k, final)
            ev_cols = ", ".join(f"e.{quote(c)}" for c in ev.columns)
            ob_cols = ", ".join(f"h.{quote(c)} AS {quote('object_' + c)}" for c in ob.columns)
            out = arrow_table(
                cur,
                f"SELECT {ev_cols}, e._event, h.rank, h.distance_m, {ob_cols} "
                "FROM _ev AS e LEFT JOIN _hits AS h USING (_event) ORDER BY e._event, h.rank",
            )
            cur.execute("ROLLBACK")
        return out

    @staticmethod
    def _bands(cur: duckdb.DuckDBPyConnection, tol: tuple[str, str, str]) -> Bands:
        """The events' time bands: how many events, the span they cover (the first band's start,
        the last one's end), and the share of that span one band is."""
        iv, etf, _ = tol
        row = cur.execute(
            f"SELECT count(*), min({etf}) - {iv}, max({etf}) + {iv}, "
            f"epoch_us(max({etf}) - min({etf}) + 2 * {iv}), 2 * epoch_us({iv}) FROM _ev"
        ).fetchone()
        n_ev, lo, hi, width_us, band_us = row or (0, None, None, 0, 0)
        return Bands(int(n_ev), lo, hi, min(1.0, int(band_us or 0) / max(1, int(width_us or 0))))

    @staticmethod
    def _dense_radius(
        cur: duckdb.DuckDBPyConnection,
        ob: Source,
        k: int,
        tol: tuple[str, str, str] | None,
        bands: Bands | None,
    ) -> float:
        """A first radius whose circle holds about `FIRST_POSITIONS` x k positions, at the objects'
        density over the events' extent, and within a time band the share of it the band holds
        (FIRST_RADIUS_M where it finds none).

        With no time band, a circle holds every position an object ever had there: at 10M GPS
        points, 250 m circles held 7,600 positions each (B8 any time, 3.2 s); 30 m, 0.13 s.
        """
        ext = cur.execute("SELECT min(lon), min(lat), max(lon), max(lat) FROM _ev").fetchone()
        if ext is None or ext[0] is None:
            return FIRST_RADIUS_M
        x0, y0, _, _ = circle_bbox(ext[0], ext[1], FIRST_RADIUS_M)
        _, _, x1, y1 = circle_bbox(ext[2], ext[3], FIRST_RADIUS_M)
        where, share = f"lon BETWEEN {x0!r} AND {x1!r} AND lat BETWEEN {y0!r} AND {y1!r}", 1.0
        if tol is not None and bands is not None:
            where += f" AND {tol[2]} BETWEEN {literal(bands.lo)} AND {literal(bands.hi)}"
            share = bands.share
        got = cur.execute(f"SELECT count(*) FROM {ob.sql} AS s WHERE {where}").fetchone()
        n = int(got[0]) * share if got else 0
        if not n:
            return FIRST_RADIUS_M
        m = math.radians(1) * EARTH_RADIUS_M  # metres per degree of latitude
        area = (x1 - x0) * m * math.cos(math.radians((y0 + y1) / 2)) * (y1 - y0) * m
        return min(max(math.sqrt(FIRST_POSITIONS * k * area / n / math.pi), 1.0), WORLD_M)

    @staticmethod
    def _few_in_time(
        cur: duckdb.DuckDBPyConnection, ob: Source, tol: tuple[str, str, str], bands: Bands
    ) -> bool:
        """True when the events' time bands hold about `TIME_BAND_PAIRS` object positions or fewer
        (estimated as if the objects' times were spread evenly over the events' span)."""
        if not bands.events:
            return True
        n_ob = cur.execute(
            f"SELECT count(*) FROM {ob.sql} AS s "
            f"WHERE {tol[2]} BETWEEN {literal(bands.lo)} AND {literal(bands.hi)}"
        ).fetchone()
        return bands.events * int(n_ob[0] if n_ob else 0) * bands.share <= TIME_BAND_PAIRS

    def _join_pass(
        self,
        cur: duckdb.DuckDBPyConnection,
        ob: Source,
        obj_key: str | None,
        tol: tuple[str, str, str] | None,
        banded: bool,
        k: int,
        final: bool,
    ) -> None:
        """Join the events in _todo to the objects within their radius (any distance unless `banded`).

        Events with k neighbours are complete; on the `final` pass every event keeps what it found.
        The others grow their radius for the next pass.
        """
        dist = haversine("e.lon", "e.lat", "o.lon", "o.lat")
        # Per event: the circle's half height in degrees, and its widest longitude (all near a pole).
        ang = f"(e.r / {EARTH_RADIUS_M!r} * (1 + 1e-9) + 1e-12)"
        extra, bucket = "", ""
        if tol is not None:
            # Time cut in buckets one tolerance wide: an event meets its own bucket and the two
            # beside it, so the band is a hash join on the bucket (not a nested loop over pairs).
            width = cur.execute(f"SELECT epoch_us({tol[0]})").fetchone()
            if width and width[0] and width[0] > 0:
                extra = f", unnest([-1, 0, 1]) + floor(epoch_us(v.{tol[1]}) / {width[0]})::BIGINT AS _b"
                bucket = f", floor(epoch_us({tol[2]}) / {width[0]})::BIGINT AS _b"
            extra = f", v.{tol[1]}" + extra
        todo = (
            f"SELECT _event, v.lon, v.lat, e.r, degrees({ang}) AS dlat, "
            f"CASE WHEN abs(v.lat) + degrees({ang}) >= 90 OR {ang} >= pi() / 2 THEN 360.0 "
            f"ELSE degrees(asin(least(1.0, sin({ang}) / cos(radians(v.lat))))) END AS dlon"
            f"{extra} FROM _ev AS v JOIN _todo AS e USING (_event)"
        )
        conds, where, prune = (["o._b = e._b"] if bucket else []), [], []
        if banded:
            if bucket:  # hashed on the time bucket; the box is a filter within it
                conds += [
                    "o.lat BETWEEN e.lat - e.dlat AND e.lat + e.dlat",
                    "o.lon BETWEEN e.lon - e.dlon AND e.lon + e.dlon",
                ]
            else:
                # Nothing to hash on: the box as DuckDB spatial's join (an R-tree over the events'
                # boxes). As four range conditions, DuckDB planned a nested loop over every pair
                # of event and position: the demo tour's 5k events took 6.4 s, now 0.7 s.
                conds.append(
                    "ST_Intersects(ST_MakeEnvelope(e.lon - e.dlon, e.lat - e.dlat, e.lon + e.dlon, "
                    "e.lat + e.dlat), ST_Point(o.lon, o.lat))"
                )
            where.append("distance_m <= r")
            extent = "min(lon - dlon), min(lat - dlat), max(lon + dlon), max(lat + dlat)"
            box = cur.execute(f"SELECT {extent} FROM ({todo}) AS e").fetchone()
            if box is not None and box[0] is not None:
                prune += [
                    f'"lon" BETWEEN {box[0]!r} AND {box[2]!r}',
                    f'"lat" BETWEEN {box[1]!r} AND {box[3]!r}',
                ]
        if tol is not None:
            iv, etf, otf = tol
            conds.append(f"o.{otf} BETWEEN e.{etf} - {iv} AND e.{etf} + {iv}")
            span = cur.execute(f"SELECT min({etf}), max({etf}) FROM _ev JOIN _todo USING (_event)").fetchone()
            if span is not None and span[0] is not None:
                prune.append(f"{otf} BETWEEN {literal(span[0])} - {iv} AND {literal(span[1])} + {iv}")
        prune += ['"lon" IS NOT NULL', '"lat" IS NOT NULL']
        objects = f"(SELECT *{bucket} FROM {ob.sql} AS s WHERE {' AND '.join(prune)})"
        # Pairs carry the position's provenance (batch, line: one stored row), not its columns,
        # and are reduced by aggregates: an object's nearest position, then each event's k
        # nearest; the k rows are read back at the end (st_bench B8: from 1.2 to 0.4 s with
        # the bucket join). A reader who may not see provenance carries the whole row instead.
        located = "_batch" in ob.columns and "_line" in ob.columns
        row = "{'b': o._batch, 'l': o._line, 'x': o.lon, 'y': o.lat}" if located else "o"
        key = f"o.{quote(obj_key)}" if obj_key is not None else "NULL"
        pairs = (
            f"SELECT e._event, e.r, {row} AS _o, {key} AS _k, {dist} AS distance_m FROM ({todo}) AS e "
            f"JOIN {objects} AS o ON {' AND '.join(conds) if conds else 'TRUE'}"
        )
        if where:
            pairs = f"SELECT * FROM ({pairs}) WHERE {' AND '.join(where)}"
        if obj_key is not None:
            # An object's nearest position stands for the object.
            pairs = (
                "SELECT _event, min(distance_m) AS distance_m, arg_min(_o, distance_m) AS _o "
                f"FROM ({pairs}) GROUP BY _event, _k"
            )
        top = (
            f"SELECT _event, count(*) AS found, arg_min({{'o': _o, 'd': distance_m}}, distance_m, {int(k)}) "
            f"AS top FROM ({pairs}) GROUP BY _event"
        )
        flat = f"SELECT _event, found, generate_subscripts(top, 1) AS rank, unnest(top) AS x FROM ({top})"
        if located:
            picked = (
                f"SELECT f._event, f.found, f.rank, f.x.d AS distance_m, o.* FROM ({flat}) AS f "
                f"JOIN {objects} AS o ON o._batch = f.x.o.b AND o._line = f.x.o.l "
                "AND o.lon = f.x.o.x AND o.lat = f.x.o.y "
                "QUALIFY row_number() OVER (PARTITION BY f._event, f.rank) = 1"
            )
        else:
            picked = f"SELECT _event, found, rank, x.d AS distance_m, unnest(x.o) FROM ({flat})"
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _pass AS {picked}")
        cols = ", ".join(quote(c) for c in ob.columns)
        complete = "" if final else f" AND found >= {int(k)}"
        cur.execute(
            f"INSERT INTO _hits SELECT _event, rank, distance_m, {cols} FROM _pass WHERE TRUE{complete}"
        )
        if final:
            cur.execute("DELETE FROM _todo")
            return
        cur.execute(f"DELETE FROM _todo WHERE _event IN (SELECT _event FROM _pass WHERE found >= {int(k)})")
        # Grow each circle for about k neighbours at the density it saw (x4 when it saw none).
        cur.execute(
            "UPDATE _todo SET r = r * coalesce((SELECT greatest(2.0, least(16.0, 1.5 * sqrt("
            f"{int(k)} / max(p.found)))) FROM _pass AS p WHERE p._event = _todo._event), 4.0)"
        )
