"""Privacy-preserving aggregates ("usable but invisible"): counts, sums and means per place and time.

A consumer who may not see a dataset row by row may still ask how many, how much and how much
on average, per area and per time bin. Two modes:

**exact**: true values, with threshold suppression. A cell is published only when at least `k`
distinct contributors (objects or persons; rows where the dataset has neither) are behind it and,
for sums and means, no single contributor makes more than `dominance` of it. Withheld cells are
left out (an absent cell reads "fewer than k, perhaps none", so even presence is not given away).

Differencing is designed out, not patched: exact aggregates exist at one grain per dataset only (the
provider's `policy.grain`, e.g. district x 1 day), time windows must start and end on that grain's
bin edges (on the clock of the grain's time zone, `grain.tz`, UTC by default: a consumer cannot ask
for another zone's days and subtract them from UTC's), and no total, margin or coarser level is ever
returned. Every published number is therefore the value of one fixed cell, the same whatever the
query around it, and no two queries give two numbers whose difference is a cell that was withheld.

**dp**: differential privacy with OpenDP. Any place level of the city's layers and any fixed bin;
each contributor is counted in at most `policy.max_cells` cells (chosen by a hash of its own cells,
independent of anyone else's data), so the L1 sensitivity of the cell vector is bounded; counts
(in dp mode always of contributors, not rows: a row count has no bound per person) get discrete
Laplace noise, sums of values clamped to the consumer's `bounds` continuous Laplace
noise, and a mean is a noisy sum over a noisy count (epsilon split in two). The cells released are
all cells of the public place list x the bins of the window, empty ones included, so which cells
exist says nothing. The epsilon OpenDP reports is charged to the consumer's budget (budget.py)
before anything is released; an exhausted budget refuses the query. Cells whose noisy count is
below k are then withheld too (post-processing, free).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from citybase.errors import InputError
from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldType
from citybase.model.layout import H3
from citybase.query._sql import literal, parse_time, quote
from citybase.query.aggregate import bucket_sql, h3_parent_sql
from citybase.query.engine import QueryEngine
from citybase.share.budget import Budgets
from citybase.share.catalog import AggregatePolicy, Grain

#: The fixed bins: each nests in the next but one (hour in day in month; day in week).
BINS = ("1h", "1d", "1w", "1mo")
LEVELS = (Level.district.value, Level.street.value, Level.community.value, Level.grid.value)
#: The most cells one differentially private query may release.
MAX_DP_CELLS = 200_000

Measure = Literal["count", "contributors", "sum", "mean"]


class AggregateQuery(BaseModel):
    """What a consumer asks for."""

    model_config = ConfigDict(extra="forbid")

    level: str = "district"
    every: str | None = "1d"
    start: datetime | None = None
    end: datetime | None = None
    measure: Measure = "count"
    field: str | None = None
    mode: Literal["exact", "dp"] = "exact"
    #: dp: the epsilon this query spends.
    epsilon: float = Field(default=0.1, gt=0, le=10)
    #: dp sums and means: each contributor's value per cell is clamped to [low, high].
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class AggregateResult:
    """Published cells (code, [bucket], value) and what it cost."""

    table: pa.Table
    mode: str
    k: int
    epsilon: float = 0.0
    epsilon_left: float | None = None


def contributor_of(spec: DatasetSpec, policy: AggregatePolicy) -> str | None:
    """Who a row is about: the policy's field, else the object field, else a one-field key."""
    if policy.contributor:
        return policy.contributor
    if spec.object_field:
        return spec.object_field
    return spec.key[0] if len(spec.key) == 1 else None


def aligned(t: datetime, every: str) -> bool:
    """True when `t` is a bin edge of `every` (bins as DuckDB's time_bucket cuts them).

    >>> aligned(datetime(2024, 5, 6), "1w"), aligned(datetime(2024, 5, 7), "1w")
    (True, False)
    """
    if t.minute or t.second or t.microsecond:
        return False
    if every == "1h":
        return True
    if t.hour:
        return False
    if every == "1d":
        return True
    if every == "1w":
        return t.weekday() == 0
    return t.day == 1


def local(t: datetime, tz: str | None) -> datetime:
    """A stored (naive UTC) time on the clock of `tz`, naive; itself when `tz` is None."""
    return t if tz is None else t.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def bins(start: datetime, end: datetime, every: str) -> list[datetime]:
    """The bin starts in [start, end) (both aligned)."""
    out, t = [], start
    while t < end:
        out.append(t)
        if every == "1mo":
            t = datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
        else:
            t += {"1h": timedelta(hours=1), "1d": timedelta(days=1), "1w": timedelta(weeks=1)}[every]
    return out


class Aggregator:
    """Runs aggregate queries over a query engine, with a budget store for dp mode."""

    def __init__(self, engine: QueryEngine, budgets: Budgets) -> None:
        self.q, self.budgets = engine, budgets

    # -- checks -------------------------------------------------------------------------------

    def _key(self, level: str) -> str:
        if level.startswith("h3:"):
            try:
                res = int(level[3:])
            except ValueError:
                raise InputError(f"level {level!r} is not h3:<resolution>") from None
            if not 0 <= res <= self.q.h3_resolution:
                raise InputError(f"H3 resolution must be 0..{self.q.h3_resolution}, not {res}")
            return quote(H3) if res == self.q.h3_resolution else h3_parent_sql(quote(H3), res)
        if level not in LEVELS:
            raise InputError(f"aggregates are by {', '.join(LEVELS)} or h3:<resolution>, not {level!r}")
        return quote(level)

    def _window(
        self, spec: DatasetSpec, a: AggregateQuery, tz: str | None
    ) -> tuple[datetime | None, datetime | None]:
        """The window, in UTC; its ends must be bin edges on the clock of `tz` (the grain's)."""
        t0, t1 = parse_time(a.start, "start"), parse_time(a.end, "end")
        if spec.time_field is None:
            if a.every is not None or t0 is not None or t1 is not None:
                raise InputError(f"dataset {spec.name!r} has no time field: ask with every=None, no window")
            return None, None
        if a.every is None:
            if t0 is not None or t1 is not None:
                # A window with no bins would be an arbitrary time slice: refused, see the module doc.
                raise InputError("a time window needs bins (every); totals over a window are not published")
            return None, None
        if a.every not in BINS:
            raise InputError(f"bins are {', '.join(BINS)}, not {a.every!r}")
        for t, what in ((t0, "start"), (t1, "end")):
            if t is not None and not aligned(local(t, tz), a.every):
                zone = f" in {tz}" if tz else ""
                raise InputError(f"{what} {t} is not on a {a.every} bin edge{zone}; windows are whole bins")
        if t0 is not None and t1 is not None and t1 <= t0:
            raise InputError("the window ends before it starts")
        return t0, t1

    def _value(self, spec: DatasetSpec, a: AggregateQuery) -> str:
        if a.measure in ("count", "contributors"):
            return "NULL"
        if a.field is None:
            raise InputError(f"measure {a.measure!r} needs a field")
        try:
            f = spec.field(a.field)
        except KeyError:
            raise InputError(f"dataset {spec.name!r} has no field {a.field!r}") from None
        if f.type not in (FieldType.int, FieldType.float) or f.personal is not None:
            raise InputError(f"field {a.field!r} is not a numeric, non-personal field")
        return f"CAST({quote(a.field)} AS DOUBLE)"

    def _rows(self, spec: DatasetSpec, a: AggregateQuery, policy: AggregatePolicy) -> str:
        """SQL of the rows (code, bucket, contributor u, value v) in the window."""
        src = self.q.source(spec.name)
        key = self._key(a.level)
        tz = policy.grain.tz
        t0, t1 = self._window(spec, a, tz)
        where = [f"{key} IS NOT NULL", *self.q.time_where(src, t0, t1)]
        tf = spec.time_field
        bucket = bucket_sql(spec, tf, a.every, tz) if a.every and tf else "CAST(NULL AS TIMESTAMP)"
        who = contributor_of(spec, policy)
        u = f"CAST({quote(who)} AS VARCHAR)" if who else "_batch || ':' || CAST(_line AS VARCHAR)"
        return (
            f"SELECT {key} AS code, {bucket} AS bucket, {u} AS u, {self._value(spec, a)} AS v "
            f"FROM {src.sql} AS s WHERE {' AND '.join(where)}"
        )

    # -- exact --------------------------------------------------------------------------------

    def exact(self, spec: DatasetSpec, a: AggregateQuery, policy: AggregatePolicy) -> AggregateResult:
        grain = policy.grain
        asked = Grain(level=a.level, every=a.every if spec.time_field else None)
        want = Grain(level=grain.level, every=grain.every if spec.time_field else None)
        if asked != want:
            raise InputError(
                f"exact aggregates of {spec.name!r} exist at level={want.level}, every={want.every} only "
                "(one fixed grain: see docs/sharing.md); other grains are available with mode=dp"
            )
        rows = self._rows(spec, a, policy)
        sql = (
            f"WITH r AS ({rows}), "
            "per AS (SELECT code, bucket, u, count(*) AS n, sum(v) AS v, count(v) AS nv FROM r GROUP BY ALL) "
            "SELECT code, bucket, sum(n) AS n, count(*) AS c, sum(v) AS s, sum(nv) AS nv, "
            "max(abs(v)) AS top, sum(abs(v)) AS total_abs FROM per GROUP BY ALL ORDER BY code, bucket"
        )
        t = self.q.run(sql)
        out: list[dict[str, Any]] = []
        for r in t.to_pylist():
            if r["c"] < policy.k:
                continue
            dominated = policy.dominance is not None and bool(r["total_abs"])
            if a.measure in ("sum", "mean") and dominated and r["top"] / r["total_abs"] > policy.dominance:
                continue
            out.append({"code": _code(r["code"], a.level), "bucket": r["bucket"], "value": _measure(a, r)})
        return AggregateResult(_table(out, spec.time_field is not None), "exact", policy.k)

    # -- differential privacy -----------------------------------------------------------------

    def _places(self, level: str) -> list[str]:
        if level.startswith("h3:") or level not in LEVELS:
            raise InputError(f"dp aggregates are by a place level of the city ({', '.join(LEVELS)})")
        if not self.q.has_layer(level):
            raise InputError(f"the city has no {level} layer")
        t = self.q.run(f"SELECT DISTINCT code FROM lake.{quote('place_' + level)} ORDER BY code")
        return [str(c) for c in t.column("code").to_pylist()]

    def dp(
        self, spec: DatasetSpec, a: AggregateQuery, policy: AggregatePolicy, consumer: str
    ) -> AggregateResult:
        from citybase.share.noise import laplace

        places = self._places(a.level)
        tz = policy.grain.tz
        t0, t1 = self._window(spec, a, tz)
        if a.every is not None and (t0 is None or t1 is None):
            raise InputError("dp aggregates need a window (start and end) so that the cells are known")
        # The cells: every bin of the window, labelled as the buckets are (in the grain's zone).
        times: list[datetime | None] = (
            [*bins(local(t0, tz), local(t1, tz), a.every)] if t0 and t1 and a.every else [None]
        )
        if len(places) * len(times) > MAX_DP_CELLS:
            raise InputError(
                f"{len(places) * len(times):,} cells; dp queries release at most {MAX_DP_CELLS:,}"
            )
        lo, hi = 0.0, 0.0
        if a.measure in ("sum", "mean"):
            if a.bounds is None or not a.bounds[0] <= a.bounds[1]:
                raise InputError("dp sums and means need bounds (low <= high) to clamp each value to")
            lo, hi = float(a.bounds[0]), float(a.bounds[1])
        rows = self._rows(spec, a, policy)
        sql = (
            f"WITH r AS ({rows}), "
            "per AS (SELECT code, bucket, u, sum(coalesce(v, 0)) AS v FROM r GROUP BY ALL), "
            "capped AS (SELECT * FROM per QUALIFY row_number() OVER "
            f"(PARTITION BY u ORDER BY hash(u, code, bucket)) <= {int(policy.max_cells)}) "
            f"SELECT code, bucket, count(*) AS n, sum(greatest({literal(lo)}, least({literal(hi)}, v))) AS s "
            "FROM capped GROUP BY ALL"
        )
        true = {(str(r["code"]), r["bucket"]): r for r in self.q.run(sql).to_pylist()}
        cells = [(p, b) for p in places for b in times]
        counts = [int(true[c]["n"]) if c in true else 0 for c in cells]
        sums = [float(true[c]["s"] or 0.0) if c in true else 0.0 for c in cells]
        m = policy.max_cells
        counting = a.measure in ("count", "contributors")
        eps_n = a.epsilon if counting else a.epsilon / 2  # a sum or mean also needs the count
        release_n = laplace(counts, sensitivity=m, epsilon=eps_n, integer=True)
        release_s = (
            None if counting else laplace(sums, sensitivity=m * max(abs(lo), abs(hi)), epsilon=a.epsilon / 2)
        )
        spent = release_n.epsilon + (release_s.epsilon if release_s is not None else 0.0)
        left = self.budgets.spend(
            consumer, spec.name, spent, policy.epsilon_budget, note=a.model_dump_json(exclude_none=True)
        )
        noisy_n = release_n.release()
        noisy_s = release_s.release() if release_s is not None else None
        out: list[dict[str, Any]] = []
        for i, (code, bucket) in enumerate(cells):
            n = max(0, int(noisy_n[i]))
            if n < policy.k:
                continue
            if a.measure in ("count", "contributors"):
                value: float = float(n)
            elif a.measure == "sum":
                assert noisy_s is not None
                value = float(noisy_s[i])
            else:
                assert noisy_s is not None
                value = min(hi, max(lo, float(noisy_s[i]) / n))
            out.append({"code": code, "bucket": bucket, "value": value})
        return AggregateResult(_table(out, spec.time_field is not None), "dp", policy.k, spent, left)


def _code(code: Any, level: str) -> str:
    return f"{int(code):x}" if level.startswith("h3:") else str(code)


def _measure(a: AggregateQuery, r: dict[str, Any]) -> float | None:
    if a.measure == "count":
        return float(r["n"])
    if a.measure == "contributors":
        return float(r["c"])
    if a.measure == "sum":
        return None if r["s"] is None else float(r["s"])
    return None if not r["nv"] else float(r["s"]) / float(r["nv"])


def _table(rows: list[dict[str, Any]], timed: bool) -> pa.Table:
    schema = pa.schema([("code", pa.string()), ("bucket", pa.timestamp("us")), ("value", pa.float64())])
    t = pa.Table.from_pylist(rows, schema=schema)
    return t if timed else t.drop_columns(["bucket"])
