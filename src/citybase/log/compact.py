"""Move what the append log holds into the lake, exactly once.

The lake commit that adds a run of log entries also records the last entry's sequence number
(the watermark). After a crash the log is replayed from the watermark: entries at or below it are
already in the lake and are dropped, the rest are applied. So nothing acknowledged is lost and
nothing is stored twice, wherever the crash happened.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pyarrow as pa

from citybase.log.append_log import QUARANTINE, AppendLog
from citybase.places.city import City
from citybase.places.enrich import enrich
from citybase.store.lake import Lake


def compact(log: AppendLog, lake: Lake, city: Callable[[], City | None], *, max_rows: int = 2_000_000) -> int:
    """Apply the log entries pending when called to the lake; return the number applied.

    Entries that arrive meanwhile wait for the next call: chasing them made a busy server commit
    back to back, each commit's fixed cost (~35 ms) spent on the few rows that came during the
    last one, instead of on what a flush interval gathers.

    `city` is asked for only when there is something to apply: opening a platform replays the
    log, and reading the city's layers for an empty log would slow every start.
    """
    mark = lake.watermark(log.id)
    log.truncate_through(mark)
    until = log.last_seq()
    applied = 0
    while True:
        entries = list(log.entries_after(mark, limit_rows=max_rows, through=until))
        if not entries:
            return applied
        rows: dict[str, list[pa.Table]] = defaultdict(list)
        quarantine: list[pa.Table] = []
        for e in entries:
            if e.kind == QUARANTINE:
                quarantine.append(e.table)
            elif e.table.num_rows:
                rows[e.dataset].append(enrich(city(), lake.spec(e.dataset), e.table, e.batch))
        last = entries[-1].seq
        with lake.transaction() as cur:
            for dataset, tables in rows.items():
                lake.insert_rows(cur, dataset, pa.concat_tables(tables))
            for q in quarantine:
                lake.insert_quarantine(cur, q)
            lake.set_watermark(cur, last, log.id)
        log.truncate_through(last)
        mark = last
        applied += len(entries)
