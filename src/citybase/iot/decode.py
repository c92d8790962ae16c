"""Telemetry messages to rows: the topic scheme, the payloads, and what is rejected and why.

Topic scheme (MQTT, QoS 1)::

    <root>/<department>/<device_id>/telemetry        root defaults to `citybase`

Payload: UTF-8 JSON, one reading or an array of readings (a gateway batching its devices)::

    {"ts": "2026-11-24T08:00:00+08:00", "pm25": 35.2, "t": 215}
    [{"ts": 1764000000.0, "pm25": 35.2}, {"ts": 1764000060.0, "pm25": 36.0}]

`ts` is ISO 8601 (with an offset; without one it is read in the city's time zone) or Unix time in
seconds (milliseconds when above 10^11); without `ts` the reading takes the time it was received.
The other keys are the device's payload keys; keys it does not declare are ignored, so a device
can send more than the city stores. A message is rejected whole (quarantined, never dropped) when
its topic does not follow the scheme, its device is unknown or belongs to another department, it is
not JSON, or a value does not fit its field (type, min, max, enum, required).

This is the hot path of the bridge: the per-message work is plain Python on precompiled plans, and
the columns are handed to Arrow once per batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from citybase.iot.decode_arrow import MIN_GROUP, fast_rows
from citybase.iot.devices import Device
from citybase.model.dataset import DatasetSpec, FieldType

#: Dataset name under which rejects that belong to no dataset are quarantined.
MQTT_QUARANTINE = "_mqtt"
TELEMETRY = "telemetry"

_NUM, _INT, _STR, _BOOL = 0, 1, 2, 3
_KINDS = {FieldType.float: _NUM, FieldType.int: _INT, FieldType.bool: _BOOL}
_INT64 = 2**63
#: Topics whose routing (device plan, or why not) the decoder remembers; then it starts over.
_ROUTES_MAX = 100_000


def telemetry_topic(department: str, device_id: str, root: str = "citybase") -> str:
    """The topic a device publishes its telemetry on.

    >>> telemetry_topic("eco", "aq-1")
    'citybase/eco/aq-1/telemetry'
    """
    return f"{root}/{department}/{device_id}/{TELEMETRY}"


def subscription(root: str = "citybase") -> str:
    """The bridge's subscription: every department's devices."""
    return f"{root}/+/+/{TELEMETRY}"


@dataclass(frozen=True)
class Reject:
    """A message (or one reading of it) that is quarantined; `reason` names the topic and problem."""

    dataset: str
    topic: str
    field: str | None
    value: str | None
    reason: str
    raw: bytes | bytearray


@dataclass(frozen=True)
class _Measure:
    key: str
    field: str
    kind: int
    scale: float
    lo: float | None
    hi: float | None
    enum: frozenset[str] | None
    required: bool


@dataclass
class _Plan:
    """A device's payload schema compiled against its dataset."""

    device: Device
    spec: DatasetSpec
    measures: list[_Measure]
    #: Devices with the same group decode together on the fast path (None: never, see _compile);
    #: the Decoder numbers the groups.
    group: Any = None


@dataclass
class Rows:
    """The accepted readings of one dataset in a batch, column by column."""

    spec: DatasetSpec
    device: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)  # Unix microseconds, UTC
    lon: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def extend(
        self,
        device: list[str],
        ts: list[int],
        lon: list[float],
        lat: list[float],
        measures: list[tuple[str, list[Any]]],
    ) -> None:
        """Add readings; a measure column they lack (another device's) gets nulls, so that the
        devices of one dataset may send different measures and the columns stay aligned."""
        n0, k = len(self.ts), len(ts)
        self.device.extend(device)
        self.ts.extend(ts)
        self.lon.extend(lon)
        self.lat.extend(lat)
        values = self.values
        for name, vals in measures:
            col = values.get(name)
            if col is None:
                col = values[name] = [None] * n0
            col.extend(vals)
        if len(values) > len(measures):
            for col in values.values():
                if len(col) == n0:
                    col.extend([None] * k)

    def to_arrow(self) -> pa.Table:
        """The batch as the dataset's raw columns, ready for `cb.ingest` (one conform, one fsync)."""
        spec = self.spec
        assert spec.object_field and spec.time_field
        cols: dict[str, pa.Array] = {
            spec.object_field: pa.array(self.device, pa.string()),
            spec.time_field: pa.array(self.ts, pa.int64()).cast(pa.timestamp("us", "UTC")),
        }
        if spec.geometry is not None and spec.geometry.lon and spec.geometry.lat:
            cols[spec.geometry.lon] = pa.array(self.lon, pa.float64())
            cols[spec.geometry.lat] = pa.array(self.lat, pa.float64())
        for name, vals in self.values.items():
            t = spec.field(name).type
            typ = {FieldType.float: pa.float64(), FieldType.int: pa.int64(), FieldType.bool: pa.bool_()}
            cols[name] = pa.array(vals, typ.get(t, pa.string()))
        return pa.table(cols)


class Decoder:
    """Turns (topic, payload) into rows per dataset or rejects, against a snapshot of the registry."""

    def __init__(
        self, devices: list[Device], specs: dict[str, DatasetSpec], *, tz: str = "UTC", root: str = "citybase"
    ):
        self.root = root
        self.tz = ZoneInfo(tz)
        self.plans: dict[str, _Plan | str] = {}
        self._routes: dict[str | bytes, tuple[_Plan | None, str, tuple[str, str | None, str] | None]] = {}
        for d in devices:
            spec = specs.get(d.dataset)
            self.plans[d.id] = (
                f"dataset {d.dataset!r} of device {d.id!r} is not declared"
                if spec is None
                else _compile(d, spec)
            )
        groups: dict[Any, int] = {}
        for plan in self.plans.values():  # a small int per payload schema: cheap to hash per message
            if isinstance(plan, _Plan) and plan.group is not None:
                plan.group = groups.setdefault(plan.group, len(groups))

    def decode(
        self,
        topic: str | bytes,
        payload: bytes | bytearray,
        received_us: int,
        out: dict[str, Rows],
        rejects: list[Reject],
    ) -> None:
        """Append the message's readings to `out` (by dataset), or its problem to `rejects`.

        `topic` may be the raw bytes off the wire (invalid UTF-8 is quarantined like any bad topic).
        """
        route = self._routes.get(topic) or self._route(topic)
        plan, name, bad = route
        if plan is None:
            assert bad is not None
            rejects.append(Reject(MQTT_QUARANTINE, name, bad[0], bad[1], bad[2], payload))
            return
        dataset = plan.device.dataset
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            reason = f"{name}: payload is not JSON ({e.__class__.__name__}: {e})"
            rejects.append(Reject(dataset, name, "(payload)", None, reason, payload))
            return
        rows = out.get(dataset)
        if rows is None:
            rows = out[dataset] = Rows(plan.spec)
        for item in body if isinstance(body, list) else (body,):
            problem = self._reading(plan, item, received_us, rows)
            if problem is not None:
                fname, value, why = problem
                rejects.append(Reject(dataset, name, fname, value, f"{name}: {why}", payload))

    def decode_many(
        self,
        msgs: Iterable[tuple[str | bytes, bytes | bytearray, int]],
        out: dict[str, Rows],
        rejects: list[Reject],
    ) -> None:
        """`decode` for each (topic, payload, received_us), the same rows and rejects; single-reading
        payloads of devices that share a payload schema are parsed together (decode_arrow)."""
        groups: dict[Any, tuple[list[_Plan], list[bytes | bytearray], list[int], list[Any]]] = {}
        slow: list[tuple[str | bytes, bytes | bytearray, int]] = []
        routes = self._routes
        for msg in msgs:
            topic, payload, received = msg
            plan = (routes.get(topic) or self._route(topic))[0]
            if plan is None or plan.group is None or payload[:1] != b"{" or b"\n" in payload:
                slow.append(msg)
                continue
            g = groups.get(plan.group)
            if g is None:
                g = groups[plan.group] = ([], [], [], [])
            g[0].append(plan)
            g[1].append(payload)
            g[2].append(received)
            g[3].append(msg)
        for plans, payloads, times, these in groups.values():
            if len(payloads) >= MIN_GROUP:
                dataset = plans[0].device.dataset
                rows = out.get(dataset)
                if rows is None:
                    rows = Rows(plans[0].spec)
                if fast_rows(plans, payloads, times, rows):
                    out[dataset] = rows
                    continue
            slow.extend(these)
        for t, p, r in slow:
            self.decode(t, p, r, out, rejects)

    def _route(self, raw: str | bytes) -> tuple[_Plan | None, str, tuple[str, str | None, str] | None]:
        """Where a topic's messages go, remembered: (plan, topic, None) or (None, topic, (field,
        value, reason))."""
        if len(self._routes) >= _ROUTES_MAX:
            self._routes.clear()  # a flood of distinct bad topics must not grow memory
        route = self._routes[raw] = self._route_uncached(raw)
        return route

    def _route_uncached(
        self, raw: str | bytes
    ) -> tuple[_Plan | None, str, tuple[str, str | None, str] | None]:
        topic = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.root or parts[3] != TELEMETRY:
            return None, topic, ("(topic)", topic, f"{topic}: not a telemetry topic")
        plan = self.plans.get(parts[2])
        if plan is None:
            return None, topic, ("(device)", parts[2], f"{topic}: unknown device {parts[2]!r}")
        if isinstance(plan, str):
            return None, topic, ("(device)", parts[2], f"{topic}: {plan}")
        dev = plan.device
        if dev.department != parts[1]:
            reason = f"{topic}: device {dev.id!r} belongs to department {dev.department!r}, not {parts[1]!r}"
            return None, topic, ("(department)", parts[1], reason)
        return plan, topic, None

    def _reading(
        self, plan: _Plan, item: Any, received_us: int, rows: Rows
    ) -> tuple[str, str | None, str] | None:
        if not isinstance(item, dict):
            return "(payload)", _short(item), "a reading must be a JSON object"
        got: list[tuple[str, Any]] = []
        for m in plan.measures:
            v = item.get(m.key)
            if v is None:
                if m.required:
                    return m.key, None, f"missing required value {m.key!r}"
                got.append((m.field, None))
                continue
            if m.kind == _NUM or m.kind == _INT:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    return m.key, _short(v), f"{m.key!r} is not a number"
                v = v * m.scale if m.scale != 1.0 else v
                if m.kind == _INT:
                    if v != int(v):
                        return m.key, _short(v), f"{m.key!r} is not a whole number"
                    v = int(v)
                    if not -_INT64 <= v < _INT64:  # would fail the whole batch's Arrow conversion
                        return m.key, _short(v), f"{m.key!r} is out of range"
                if m.lo is not None and v < m.lo:
                    return m.key, _short(v), f"{m.key!r} is below the minimum {m.lo:g}"
                if m.hi is not None and v > m.hi:
                    return m.key, _short(v), f"{m.key!r} is above the maximum {m.hi:g}"
            elif m.kind == _BOOL:
                if not isinstance(v, bool):
                    return m.key, _short(v), f"{m.key!r} is not true/false"
            else:
                v = v if isinstance(v, str) else json.dumps(v)
                if m.enum is not None and v not in m.enum:
                    return m.key, _short(v), f"{m.key!r} is not one of {sorted(m.enum)}"
            got.append((m.field, v))
        if len(got) == sum(1 for _, v in got if v is None):
            return "(payload)", None, f"no known measure (expected some of {[m.key for m in plan.measures]})"
        ts = item.get("ts")
        if ts is None:
            us = received_us
        else:
            us_or_err = self._time(ts)
            if isinstance(us_or_err, str):
                return "ts", _short(ts), us_or_err
            us = us_or_err
        d = plan.device
        rows.extend([d.id], [us], [d.lon], [d.lat], [(name, [v]) for name, v in got])
        return None

    def _time(self, ts: Any) -> int | str:
        if isinstance(ts, bool):
            return "'ts' is not a time"
        if isinstance(ts, int | float):
            if not math.isfinite(ts):
                return "'ts' is not a time"
            sec = ts / 1000 if abs(ts) > 1e11 else ts
            us = round(sec * 1_000_000)
            # beyond a 64-bit microsecond timestamp the whole batch could not be stored
            return us if -_INT64 <= us < _INT64 else "'ts' is out of range"
        if isinstance(ts, str):
            try:
                dt = datetime.fromisoformat(ts)
            except ValueError:
                return "'ts' is not an ISO 8601 time or Unix seconds"
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=self.tz)
            return round(dt.astimezone(UTC).timestamp() * 1_000_000)
        return "'ts' is not a time"


def _compile(device: Device, spec: DatasetSpec) -> _Plan | str:
    names = {f.name for f in spec.fields}
    measures = []
    for key, pf in device.payload.items():
        if pf.field not in names:
            return f"device {device.id!r} maps {key!r} to {pf.field!r}, not a field of {spec.name!r}"
        f = spec.field(pf.field)
        measures.append(
            _Measure(
                key=key,
                field=f.name,
                kind=_KINDS.get(f.type, _STR),
                scale=pf.scale,
                lo=f.min,
                hi=f.max,
                enum=frozenset(f.enum) if f.enum is not None else None,
                required=f.required,
            )
        )
    if not spec.object_field or not spec.time_field:
        return f"dataset {spec.name!r} of device {device.id!r} is not a series dataset"
    fields = [m.field for m in measures]
    group = (spec.name, tuple(measures)) if measures and len(set(fields)) == len(fields) else None
    return _Plan(device, spec, measures, group)


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s[:200]
