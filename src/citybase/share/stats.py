"""The platform figures a city reports: systems connected, datasets, records, new records a day, uses.

Totals come from the lake's statistics (coverage.py). New records a day are counted on the
`_ingested_at` column of each dataset within the last `days` days only: the lake's min/max
statistics on that column skip every file written before the window, so the cost follows what
arrived lately (about 500,000 rows a day in the reference city), not what is stored (18 billion).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from pydantic import BaseModel

from citybase.model.layout import INGESTED_AT
from citybase.query._sql import literal, quote
from citybase.registry import Registry
from citybase.share.coverage import CoverageCache
from citybase.share.usage import Usage
from citybase.store.lake import Lake


class DayCount(BaseModel):
    day: date
    count: int


class PlatformStats(BaseModel):
    departments: int
    systems_connected: int
    datasets: int
    total_records: int
    new_records_per_day: list[DayCount]
    data_uses: int
    data_uses_per_day: list[DayCount]


def new_records(lake: Lake, since: datetime) -> dict[date, int]:
    """Rows ingested per day since `since`, over every dataset."""
    out: Counter[date] = Counter()
    cur = lake.cursor()
    try:
        for name in lake.datasets:
            col = quote(INGESTED_AT)
            rows = cur.execute(
                f"SELECT CAST({col} AS DATE) AS d, count(*) FROM {lake.table(name)} "
                f"WHERE {col} >= {literal(since)} GROUP BY d"
            ).fetchall()
            for d, n in rows:
                out[d] += int(n)
    finally:
        cur.close()
    return dict(out)


def platform_stats(
    registry: Registry, lake: Lake, coverage: CoverageCache, usage: Usage, now: datetime, days: int = 30
) -> PlatformStats:
    """The city's figures; `days` is the window of the per-day series (ending today)."""
    specs = lake.datasets
    systems = {s.id for s in registry.systems()} | {s.system for s in specs.values()}
    cov = coverage.get()
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day)
    per_day = new_records(lake, since)
    uses = {r.day: r.uses for r in usage.summary(["day"], start=first) if r.day is not None}
    series = [first + timedelta(days=i) for i in range(days)]
    total_uses = sum(r.uses for r in usage.summary([]))
    return PlatformStats(
        departments=len(registry.departments()),
        systems_connected=len(systems),
        datasets=len(specs),
        total_records=sum(c.rows for c in cov.values()),
        new_records_per_day=[DayCount(day=d, count=per_day.get(d, 0)) for d in series],
        data_uses=total_uses,
        data_uses_per_day=[DayCount(day=d, count=uses.get(d, 0)) for d in series],
    )
