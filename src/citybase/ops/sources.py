"""Where queue events come from: new rows of the hotline dataset and of the IoT alarms dataset.

The importer reads a source dataset's rows ingested after its watermark (`_ingested_at`, which the
lake's statistics prune on, so a sync costs what arrived, not what is stored) and turns each into
an event. A first sync takes only the newest `backlog` rows: a city that switches the console on
with years of complaints in its lake wants today's queue, not a million old tickets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from citybase.model.layout import INGESTED_AT, stored_columns
from citybase.ops.model import NewEvent, Source
from citybase.ops.store import Operations
from citybase.query._sql import literal, quote

if TYPE_CHECKING:
    from citybase.platform import CityBase

#: The alarms dataset the IoT rules write (citybase.iot.rules.ALARMS; not imported: iot sits beside us).
ALARMS = "iot_alarms"


@dataclass(frozen=True)
class Feed:
    """A dataset whose rows become events, and which of its columns say what."""

    dataset: str
    source: Source
    title: tuple[str, ...]  # the first present, non-empty column gives the title
    description: tuple[str, ...]


FEEDS: tuple[Feed, ...] = (
    Feed("hotline_events", Source.hotline, ("category", "title"), ("description", "address")),
    Feed(ALARMS, Source.alarm, ("rule", "field"), ("device", "severity")),
)


def sync(ops: Operations, cb: CityBase, *, backlog: int = 200, batch: int = 5000) -> int:
    """Import new rows of every feed into the queue; returns how many events were added."""
    added = 0
    for feed in FEEDS:
        if feed.dataset in cb.datasets:
            added += _sync_feed(ops, cb, feed, backlog=backlog, batch=batch)
    return added


def _sync_feed(ops: Operations, cb: CityBase, feed: Feed, *, backlog: int, batch: int) -> int:
    spec = cb.datasets[feed.dataset]
    cols = {n for n, _, _ in stored_columns(spec)}
    mark = ops.watermark(feed.dataset)
    table = cb.lake.table(feed.dataset)
    ing = quote(INGESTED_AT)
    if mark is None:
        # Newest first, then read back in ingest order so the watermark ends at the newest.
        sql = f"SELECT * FROM {table} ORDER BY {ing} DESC LIMIT {int(backlog)}"
    else:
        sql = f"SELECT * FROM {table} WHERE {ing} > {literal(mark)} ORDER BY {ing} LIMIT {int(batch)}"
    rows = cb.sql(sql).to_pylist()
    if not rows:
        if mark is None:
            ops.set_watermark(feed.dataset, datetime(1970, 1, 1))
        return 0
    rows.sort(key=lambda r: r[INGESTED_AT])
    key = spec.key or [c for c in (spec.object_field, spec.time_field) if c]
    events = []
    for r in rows:
        source_id = "|".join(str(r.get(k)) for k in key) if key else f"{r.get('_batch')}:{r.get('_line')}"
        events.append((_event(r, feed, spec.time_field, cols), feed.source, source_id, feed.dataset))
    added = ops.add_many(events)
    ops.set_watermark(feed.dataset, rows[-1][INGESTED_AT])
    return added


def _first(r: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = r.get(n)
        if v not in (None, ""):
            return str(v)
    return None


def _event(r: dict[str, Any], feed: Feed, time_field: str | None, cols: set[str]) -> NewEvent:
    title = _first(r, feed.title) or feed.dataset
    if feed.source is Source.alarm and r.get("value") is not None:
        title = f"{title}: {r.get('field')} {r.get('op', '')} {r.get('threshold')} (value {r['value']})"
    occurred = r.get(time_field) if time_field else None
    return NewEvent(
        title=title[:500],
        category=_first(r, ("category", "severity")),
        description=_first(r, feed.description) or "",
        lon=r.get("lon") if "lon" in cols else None,
        lat=r.get("lat") if "lat" in cols else None,
        district=r.get("district"),
        grid=r.get("grid"),
        occurred_at=occurred if isinstance(occurred, datetime) else None,
    )
