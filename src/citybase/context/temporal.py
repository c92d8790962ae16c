"""The temporal representation of entities (clause 4.5.6 to 4.5.9): history rows from the lake,
filtered by time, cut to the last N, and shown as instances, as temporalValues, or aggregated per
period (totalCount, distinctCount, sum, avg, min, max, stddev, sumsq).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from citybase.context.errors import BadRequestData
from citybase.context.model import CONTENT, Entity, Instance, parse_time
from citybase.context.render import View, render_instance

AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
#: temporalValues: the member that holds the [value, time] pairs, by attribute type.
VALUES_KEY = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "JsonProperty": "jsons",
    "VocabProperty": "vocabs",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
}
_DURATION = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


@dataclass
class TimeFilter:
    """timerel / timeAt / endTimeAt / timeproperty / lastN of a temporal request."""

    timerel: str | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None

    @classmethod
    def parse(
        cls,
        timerel: str | None,
        time_at: str | None,
        end_time_at: str | None,
        timeproperty: str | None,
        last_n: str | None,
    ) -> TimeFilter:
        f = cls(timeproperty=timeproperty or "observedAt")
        if f.timeproperty not in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
            raise BadRequestData(f"timeproperty {timeproperty!r} is not supported")
        if timerel is not None:
            if timerel not in ("before", "after", "between"):
                raise BadRequestData(f"timerel {timerel!r} is not before, after or between")
            if time_at is None:
                raise BadRequestData("timerel needs timeAt")
            f.timerel = timerel
            f.time_at = parse_time(time_at, "timeAt")
            if timerel == "between":
                if end_time_at is None:
                    raise BadRequestData("timerel=between needs endTimeAt")
                f.end_time_at = parse_time(end_time_at, "endTimeAt")
                if f.end_time_at <= f.time_at:
                    raise BadRequestData("endTimeAt must be after timeAt")
        elif time_at is not None:
            raise BadRequestData("timeAt needs timerel")
        if last_n is not None:
            try:
                f.last_n = int(last_n)
            except ValueError as e:
                raise BadRequestData("lastN must be a positive integer") from e
            if f.last_n < 1:
                raise BadRequestData("lastN must be a positive integer")
        return f

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """(from inclusive, to exclusive) on the time property."""
        if self.timerel == "after":
            return self.time_at, None
        if self.timerel == "before":
            return None, self.time_at
        if self.timerel == "between":
            return self.time_at, self.end_time_at
        return None, None


def parse_duration(text: str) -> timedelta | None:
    """ISO 8601 duration to a timedelta (months as 30 days, years as 365); P0D and PT0S are None."""
    m = _DURATION.match(text)
    if m is None or text in ("P", "PT"):
        raise BadRequestData(f"aggrPeriodDuration {text!r} is not an ISO 8601 duration")
    y, mo, w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    delta = timedelta(days=y * 365 + mo * 30 + w * 7 + d, hours=h, minutes=mi, seconds=s)
    return delta if delta.total_seconds() > 0 else None


@dataclass
class TemporalEntity:
    """One entity's history: its types and, by attribute, instances oldest first."""

    id: str
    types: list[str]
    attrs: dict[str, list[tuple[datetime | None, Instance]]] = field(default_factory=dict)

    def latest(self) -> Entity:
        """A current-state view (last instance per attribute and dataset) for q and geo filters."""
        attrs: dict[str, list[Instance]] = {}
        created: list[str] = []
        for a, items in self.attrs.items():
            by_ds: dict[Any, Instance] = {}
            for _, inst in items:
                by_ds[inst.get("datasetId")] = inst
                if isinstance(inst.get("createdAt"), str):
                    created.append(inst["createdAt"])
            attrs[a] = list(by_ds.values())
        out: Entity = {"id": self.id, "type": self.types, "attrs": attrs}
        if created:  # the entity's: its first attribute's (for orderBy=createdAt)
            out["createdAt"] = min(created)
        return out


def assemble(rows: list[dict[str, Any]], last_n: int | None = None) -> dict[str, TemporalEntity]:
    """Temporal entities from visible history rows (already ordered by time)."""
    out: dict[str, TemporalEntity] = {}
    for r in rows:
        ent = out.get(r["entity_id"])
        types = json.loads(r["entity_type"])
        if ent is None:
            ent = out[r["entity_id"]] = TemporalEntity(r["entity_id"], types)
        else:
            ent.types = types
        t = r.get("t")
        if isinstance(t, datetime) and t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        ent.attrs.setdefault(r["attr"], []).append((t, r["instance"]))
    if last_n is not None:
        for ent in out.values():
            for a in ent.attrs:
                ent.attrs[a] = ent.attrs[a][-last_n:]
    return out


def _time_of(inst: Instance, prop: str) -> Any:
    return inst.get(prop) or inst.get("modifiedAt")


def render_temporal(
    ent: TemporalEntity,
    view: View,
    *,
    mode: str = "normalized",
    prop: str = "observedAt",
    aggr: list[str] | None = None,
    period: timedelta | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> dict[str, Any]:
    """The temporal representation of one entity in the mode asked for."""
    ctx = view.ctx
    types = [ctx.compact(t) for t in ent.types]
    out: dict[str, Any] = {}
    if "id" not in view.omit and (view.pick_core is None or "id" in view.pick_core):
        out["id"] = ent.id
    if "type" not in view.omit and (view.pick_core is None or "type" in view.pick_core):
        out["type"] = types[0] if len(types) == 1 else types
    for iri, items in ent.attrs.items():
        if view.attrs is not None and iri not in view.attrs:
            continue
        if iri in view.omit:
            continue
        if view.dataset_ids is not None:
            items = [(t, i) for t, i in items if i.get("datasetId") in view.dataset_ids]
        if not items:
            continue
        name = ctx.compact(iri)
        if mode == "temporalValues":
            out[name] = _temporal_values(items, prop, view)
        elif mode == "aggregatedValues":
            out[name] = _aggregated(items, aggr or list(AGGR_METHODS), period, window)
        else:
            tv = View(ctx, form="temporal", sys_attrs=view.sys_attrs, lang=view.lang)
            out[name] = [render_instance(i, tv) for _, i in items]
    return out


def _temporal_values(items: list[tuple[datetime | None, Instance]], prop: str, view: View) -> Any:
    by_ds: dict[Any, list[Instance]] = {}
    for _, inst in items:
        by_ds.setdefault(inst.get("datasetId"), []).append(inst)
    rendered = []
    for ds, insts in by_ds.items():
        atype = insts[0].get("type", "Property")
        key = VALUES_KEY.get(atype, "values")
        content = CONTENT.get(atype, "value")
        pairs = []
        for inst in insts:
            v = inst.get(content)
            if atype == "VocabProperty":
                v = [view.ctx.compact(x) for x in v] if isinstance(v, list) else view.ctx.compact(str(v))
            if atype == "ListRelationship":
                v = [{"object": o} for o in v] if isinstance(v, list) else v
            pairs.append([v, _time_of(inst, prop)])
        if atype == "LanguageProperty" and view.lang is not None:
            pairs = [[_pick(p[0], view.lang), p[1]] for p in pairs]
            atype, key = "Property", "values"
        elif atype in ("LanguageProperty", "JsonProperty", "VocabProperty"):
            key_of = {"LanguageProperty": "languageMap", "JsonProperty": "json", "VocabProperty": "vocab"}
            pairs = [[{key_of[atype]: p[0]}, p[1]] for p in pairs]
        item: dict[str, Any] = {"type": atype, key: pairs}
        if ds is not None:
            item["datasetId"] = ds
        rendered.append(item)
    return rendered[0] if len(rendered) == 1 else rendered


def _pick(lm: Any, lang: str) -> Any:
    if isinstance(lm, dict):
        for tag in lang.split(","):
            if tag in lm:
                return lm[tag]
        return next(iter(lm.values()), None)
    return lm


def _aggregated(
    items: list[tuple[datetime | None, Instance]],
    methods: list[str],
    period: timedelta | None,
    window: tuple[datetime | None, datetime | None],
) -> Any:
    atype = items[0][1].get("type", "Property")
    content = CONTENT.get(atype, "value")
    points = [(t, i.get(content)) for t, i in items if t is not None]
    out: dict[str, Any] = {"type": atype}
    if not points:
        return out
    start = window[0] or points[0][0]
    end = window[1] or (points[-1][0] + timedelta(microseconds=1) if period is None else None)
    buckets: list[tuple[datetime, datetime, list[Any]]] = []
    if period is None:
        assert end is not None
        buckets.append((start, end, [v for t, v in points if start <= t < end]))
    else:
        stop = end or points[-1][0] + timedelta(microseconds=1)
        cur = start
        while cur < stop:
            nxt = cur + period
            vals = [v for t, v in points if cur <= t < nxt]
            if vals:
                buckets.append((cur, nxt, vals))
            cur = nxt
    for m in methods:
        series = []
        for b0, b1, vals in buckets:
            series.append([_aggregate(m, vals), _iso(b0), _iso(b1)])
        out[m] = series
    return out


def _iso(t: datetime) -> str:
    return (
        t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if t.microsecond == 0
        else t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    )


def _aggregate(method: str, vals: list[Any]) -> Any:
    if method == "totalCount":
        return len(vals)
    if method == "distinctCount":
        return len({json.dumps(v, sort_keys=True) for v in vals})
    nums = [float(v) for v in vals if isinstance(v, int | float)]
    if not nums:
        if method in ("min", "max"):
            strs = [v for v in vals if isinstance(v, str)]
            return (min(strs) if method == "min" else max(strs)) if strs else None
        return None
    if method == "sum":
        return sum(nums)
    if method == "avg":
        return sum(nums) / len(nums)
    if method == "min":
        return min(nums)
    if method == "max":
        return max(nums)
    if method == "sumsq":
        return sum(x * x for x in nums)
    mean = sum(nums) / len(nums)
    return math.sqrt(sum((x - mean) ** 2 for x in nums) / len(nums))
