"""`citybase simulate --live`: the sample city replayed in real time through the real ingest paths.

Nothing is written behind the gateway's back. Given a running `citybase serve`, an operator key and
an MQTT broker, the live city

1. registers the sample city's departments and information systems, issues each department a key,
   declares its datasets and registers its sensors as IoT devices, all over the HTTP API;
2. replays the sample city's rows in time order, stamped with the wall-clock time they are sent:
   sensors (air quality stations, traffic loops) publish telemetry over MQTT (QoS 1, one message
   per reading, on each device's topic), the vehicle fleet, the citizen hotline and the other
   departments push batches over HTTP (Arrow IPC) with their own keys and idempotency keys.

Time runs `speed` times faster than the sample city's own clock; with `records_per_day` the rows
are paced at that rate instead (the reference city: 500,000 a day). `systems` adds information
systems (each a copy of a department register, pushing its own rows) until the platform has that
many (the reference city: 130). Sources loop when they run out, with fresh record ids, so a run can
last as long as asked.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from citybase.errors import InputError
from citybase.model.dataset import DatasetSpec, FieldType
from citybase.sim.scale import SimManifest

log = logging.getLogger("citybase.sim.live")

#: Sensors: dataset -> (registry dataset of the devices, device id column, device type).
SENSORS = {
    "air_quality": ("air_quality_stations", "station_id", "air_quality"),
    "traffic_flow": ("traffic_detectors", "detector_id", "traffic_loop"),
}
#: Reference data pushed once at setup, not replayed.
REFERENCE = ("air_quality_stations", "traffic_detectors", "roads", "housing_buildings")


@dataclass
class LiveOptions:
    url: str
    key: str  # the operator's key: registers departments, issues their keys
    mqtt_url: str | None = "mqtt://127.0.0.1:1883"
    speed: float = 60.0
    records_per_day: float | None = None
    systems: int | None = None
    duration_s: float | None = None
    tick_s: float = 1.0
    mqtt_root: str = "citybase"


@dataclass
class LiveStats:
    """What a run sent, and what the server said about its lag."""

    started: float = field(default_factory=time.time)
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mqtt_messages: int = 0
    http_batches: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.sent.values())

    @property
    def elapsed(self) -> float:
        return time.time() - self.started


@dataclass
class Stream:
    """One dataset's rows in replay order, and how they travel."""

    dataset: str
    spec: DatasetSpec
    table: pa.Table  # sorted by sim time
    sim_times: np.ndarray  # seconds since the sample city's start, per row
    via: str  # "mqtt" or "http"
    department: str
    device_field: str | None = None
    rate: float | None = None  # rows per second when paced by rate

    @property
    def period(self) -> float:
        """Sim seconds one pass over the rows covers (the loop length, at least a minute)."""
        if len(self.sim_times) < 2:
            return 86_400.0
        step = float(np.median(np.diff(self.sim_times))) or 1.0
        return max(60.0, float(self.sim_times[-1] - self.sim_times[0]) + step)


class LiveCity:
    """The sample city written by `simulate`, driven live against a running server."""

    def __init__(self, source: Path, opts: LiveOptions):
        self.source = Path(source)
        self.opts = opts
        self.manifest = SimManifest.load(self.source / "manifest.json")
        self.tz = ZoneInfo(self.manifest.timezone)
        self.specs = {
            p.stem: DatasetSpec.from_file(p) for p in sorted((self.source / "datasets").glob("*.yaml"))
        }
        self.keys: dict[str, str] = {}
        self.http = httpx.Client(base_url=opts.url, timeout=60)
        self.streams: list[Stream] = []

    def close(self) -> None:
        self.http.close()

    # -- setup --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.opts.key}", **kw.pop("headers", {})}
        try:
            r = self.http.request(method, path, headers=headers, **kw)
        except httpx.TransportError as e:
            raise InputError(f"cannot reach the server at {self.opts.url}: {e}") from e
        if r.status_code >= 400:
            raise InputError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def setup(self) -> None:
        """Departments, systems, keys, datasets, devices, reference rows: all over the API."""
        for spec in self.specs.values():
            self._call("POST", "/api/v1/departments", json={"id": spec.department, "name": spec.department})
            self._call(
                "POST",
                f"/api/v1/departments/{spec.department}/systems",
                json={"id": spec.system, "name": spec.system},
            )
        for dept in sorted({s.department for s in self.specs.values()}):
            r = self._call("POST", "/api/v1/keys", json={"department": dept, "label": "live simulation"})
            self.keys[dept] = r.json()["key"]
        for spec in self.specs.values():
            self._declare(spec)
        for name in REFERENCE:
            if name in self.specs:
                self._push(name, self._read(name), idem=f"live-reference-{name}")
        if self.opts.mqtt_url:
            self._register_devices()
        self.streams = self._build_streams()

    def _declare(self, spec: DatasetSpec) -> None:
        body = json.loads(spec.model_dump_json())
        self._call("POST", "/api/v1/datasets", self.keys[spec.department], json=body)

    def _register_devices(self) -> None:
        for dataset, (registry, id_field, dtype) in SENSORS.items():
            if dataset not in self.specs or registry not in self.specs:
                continue
            spec = self.specs[dataset]
            measures = [
                f.name
                for f in spec.fields
                if f.name not in (id_field, spec.time_field) and f.type is not FieldType.string
            ]
            ref = self._read(registry)
            lon, lat = _lon_lat(ref)
            for dev, x, y in zip(ref.column(id_field).to_pylist(), lon, lat, strict=True):
                self._call(
                    "POST",
                    "/api/v1/iot/devices",
                    self.keys[spec.department],
                    json={
                        "id": dev,
                        "type": dtype,
                        "department": spec.department,
                        "dataset": dataset,
                        "lon": x,
                        "lat": y,
                        "payload": {m: m for m in measures},
                    },
                )

    def _read(self, name: str) -> pa.Table:
        f = self.manifest.get(name)
        path = self.source / f.path
        if f.format == "csv":
            return pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True, column_types=_all_strings(path)
                ),
            )
        if f.format == "geojson":
            import pyogrio

            gdf = pyogrio.read_dataframe(path)
            geom = self.specs[name].geometry
            col = geom.field if geom is not None and geom.field else "geometry"
            df = gdf.drop(columns="geometry").assign(**{col: gdf.geometry.to_wkb()})
            return pa.Table.from_pandas(df, preserve_index=False)
        import pyarrow.parquet as pq

        return pq.read_table(path)

    # -- the replay ---------------------------------------------------------------------------

    def _build_streams(self) -> list[Stream]:
        replayed = [n for n in self.specs if n not in REFERENCE and n in self.manifest.datasets]
        streams = []
        for name in replayed:
            spec = self.specs[name]
            t = self._read(name)
            raw_time = _raw_name(spec, spec.time_field) if spec.time_field else None
            sensor = SENSORS.get(name)
            via = "mqtt" if sensor and self.opts.mqtt_url else "http"
            if spec.kind.value == "records" or raw_time is None or raw_time not in t.column_names:
                # A register's dates are when things were registered, years apart: its rows are
                # paced instead, one pass a sample-city day.
                paced = Stream(name, spec, t, np.zeros(t.num_rows), via, spec.department)
                paced.rate = t.num_rows / 86_400 * self.opts.speed
                streams.append(paced)
                continue
            sim = _seconds(t.column(raw_time), self.tz)
            sim = np.where(np.isnan(sim), np.nanmin(sim) if np.isfinite(sim).any() else 0.0, sim)
            order = np.argsort(sim, kind="stable")
            t, sim = t.take(pa.array(order)), sim[order]
            device = sensor[1] if sensor else None
            streams.append(Stream(name, spec, t, sim - sim[0], via, spec.department, device))
        streams += self._extra_systems(streams)
        if self.opts.records_per_day:
            total = sum(s.table.num_rows for s in streams)
            for s in streams:
                s.rate = self.opts.records_per_day / 86_400 * self.opts.speed * s.table.num_rows / total
        return streams

    def _extra_systems(self, streams: list[Stream]) -> list[Stream]:
        """Copies of the department registers under new systems, up to `systems` in all."""
        want = self.opts.systems or 0
        have = len({(s.department, s.system) for s in self.specs.values()})
        registers = [s for s in streams if s.spec.kind.value == "records"]
        extra: list[Stream] = []
        for j in range(max(0, want - have)):
            base = registers[j % len(registers)]
            system = f"{base.spec.system}-{j + 1:03d}"
            spec = base.spec.model_copy(update={"name": f"{base.dataset}_{j + 1:03d}", "system": system})
            self._call(
                "POST", f"/api/v1/departments/{spec.department}/systems", json={"id": system, "name": system}
            )
            self._declare(spec)
            extra.append(
                Stream(spec.name, spec, base.table, base.sim_times, "http", spec.department, rate=base.rate)
            )
        return extra

    def schedule(self, wall0: float) -> Iterator[tuple[float, int, int, int]]:
        """(wall time, stream, row, loop) in sending order, forever."""
        heap: list[tuple[float, int, int, int]] = []
        for i, s in enumerate(self.streams):
            if s.table.num_rows:
                heap.append((self._due(s, wall0, 0, 0), i, 0, 0))
        heapq.heapify(heap)
        while heap:
            due, i, row, loop = heapq.heappop(heap)
            yield due, i, row, loop
            s = self.streams[i]
            row += 1
            if row == s.table.num_rows:
                row, loop = 0, loop + 1
            heapq.heappush(heap, (self._due(s, wall0, row, loop), i, row, loop))

    def _due(self, s: Stream, wall0: float, row: int, loop: int) -> float:
        if s.rate:
            return float(wall0 + (loop * s.table.num_rows + row) / s.rate)
        return wall0 + (float(s.sim_times[row]) + loop * s.period) / self.opts.speed

    def run(
        self, stop: threading.Event | None = None, on_tick: Callable[[LiveStats], None] | None = None
    ) -> LiveStats:
        """Send until `duration_s` passes or `stop` is set; returns what was sent."""
        stop = stop or threading.Event()
        stats = LiveStats()
        mqtt = self._mqtt() if any(s.via == "mqtt" for s in self.streams) else None
        wall0 = time.time()
        end = wall0 + self.opts.duration_s if self.opts.duration_s else None
        plan = self.schedule(wall0)
        pending = next(plan, None)
        tick = 0
        try:
            while not stop.is_set() and pending is not None:
                tick += 1
                horizon = wall0 + tick * self.opts.tick_s
                if end is not None:
                    horizon = min(horizon, end)
                due: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
                while pending is not None and pending[0] <= horizon:
                    when, i, row, loop = pending
                    due[i].append((row, loop, when))
                    pending = next(plan, None)
                for i, rows in due.items():
                    self._send(self.streams[i], rows, mqtt, stats, tick)
                if on_tick is not None:
                    on_tick(stats)
                if end is not None and (horizon >= end or time.time() >= end):
                    break  # (a tick that took longer than its share must not stretch the run)
                stop.wait(max(0.0, horizon - time.time()))
        finally:
            if mqtt is not None:
                mqtt.loop_stop()
                mqtt.disconnect()
        return stats

    def _send(
        self, s: Stream, rows: list[tuple[int, int, float]], mqtt: Any, stats: LiveStats, tick: int
    ) -> None:
        idx = pa.array([r for r, _, _ in rows])
        t = s.table.take(idx)
        loops = [lp for _, lp, _ in rows]
        sent_at = [w for _, _, w in rows]
        t = _restamp(t, s.spec, sent_at, self.tz)
        t = _fresh_keys(t, s.spec, loops)
        try:
            if s.via == "mqtt":
                assert mqtt is not None and s.device_field is not None
                for rec, when in zip(t.to_pylist(), sent_at, strict=True):
                    dev = rec.pop(s.device_field)
                    rec.pop(s.spec.time_field or "", None)
                    rec["ts"] = when
                    topic = f"{self.opts.mqtt_root}/{s.department}/{dev}/telemetry"
                    mqtt.publish(topic, json.dumps(rec, default=str), qos=1)
                stats.mqtt_messages += t.num_rows
            else:
                res = self._push(s.dataset, t, idem=f"live-{s.dataset}-{int(sent_at[0] * 1000)}-{tick}")
                stats.http_batches += 1
                stats.rejected += len(res.get("rejected", []))
            stats.sent[s.dataset] += t.num_rows
        except (httpx.HTTPError, InputError) as e:
            stats.errors.append(f"{s.dataset}: {e}")
            log.warning("sending %s failed: %s", s.dataset, e)

    def _push(self, dataset: str, t: pa.Table, idem: str) -> dict[str, Any]:
        spec = self.specs.get(dataset) or next(s.spec for s in self.streams if s.dataset == dataset)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        r = self._call(
            "POST",
            f"/api/v1/datasets/{dataset}/rows",
            self.keys[spec.department],
            content=bytes(sink.getvalue()),
            headers={"Content-Type": "application/vnd.apache.arrow.stream", "Idempotency-Key": idem},
        )
        out: dict[str, Any] = r.json()
        return out

    def _mqtt(self) -> Any:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        assert self.opts.mqtt_url is not None
        u = urlsplit(self.opts.mqtt_url)
        c = Client(CallbackAPIVersion.VERSION2, client_id=f"citybase-live-{int(time.time())}")
        if u.username:
            c.username_pw_set(u.username, u.password)
        if u.scheme == "mqtts":
            c.tls_set()
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.connect(u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883))
        c.loop_start()
        return c

    def lag(self) -> float | None:
        """The server's ingest lag (seconds), from its metrics."""
        try:
            text = self._call("GET", "/metrics").text
        except (httpx.HTTPError, InputError):
            return None
        for line in text.splitlines():
            if line.startswith("citybase_ingest_lag_seconds "):
                return float(line.split()[1])
        return None


# -- helpers ----------------------------------------------------------------------------------


def _all_strings(path: Path) -> dict[str, pa.DataType]:
    with path.open(encoding="utf-8-sig") as f:
        header = next(csv.reader([f.readline()]))
    return dict.fromkeys(header, pa.string())


def _raw_name(spec: DatasetSpec, name: str) -> str:
    """The column a field comes from in the source file (its `source`, else its name)."""
    f = next(f for f in spec.fields if f.name == name)
    return f.source or f.name


def _lon_lat(t: pa.Table) -> tuple[list[float], list[float]]:
    if "longitude" in t.column_names:
        return [float(v) for v in t["longitude"].to_pylist()], [float(v) for v in t["latitude"].to_pylist()]
    import shapely

    pts = shapely.from_wkb(t["geometry"].to_pylist())
    return list(shapely.get_x(pts)), list(shapely.get_y(pts))


def _seconds(col: pa.ChunkedArray, tz: ZoneInfo) -> np.ndarray:
    """A time column (timestamps or text) as float seconds, for ordering."""
    if pa.types.is_timestamp(col.type):
        us: np.ndarray = col.cast(pa.timestamp("us")).to_numpy().astype("datetime64[us]").astype(np.int64)
        return us / 1e6
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(col.to_pylist()), errors="coerce", format="mixed").astype(
        "datetime64[us]"
    )
    secs = parsed.astype("int64").to_numpy() / 1e6
    return np.where(parsed.isna().to_numpy(), np.nan, secs).astype(np.float64)


def _restamp(t: pa.Table, spec: DatasetSpec, sent_at: list[float], tz: ZoneInfo) -> pa.Table:
    """The time field set to when the row is sent, in the city's local time (as the file writes it)."""
    if not spec.time_field:
        return t
    raw = _raw_name(spec, spec.time_field)
    if raw not in t.column_names:
        return t
    fmt = next(f.format for f in spec.fields if f.name == spec.time_field) or "%Y-%m-%d %H:%M:%S"
    local = [datetime.fromtimestamp(w, UTC).astimezone(tz).replace(tzinfo=None) for w in sent_at]
    i = t.column_names.index(raw)
    if pa.types.is_timestamp(t.schema.field(i).type):
        return t.set_column(i, raw, pa.array(local, pa.timestamp("us")))
    return t.set_column(i, raw, pa.array([d.strftime(fmt) for d in local], pa.string()))


def _fresh_keys(t: pa.Table, spec: DatasetSpec, loops: list[int]) -> pa.Table:
    """A looped row is a new record: its text key fields get a `~<loop>` suffix."""
    if not any(loops):
        return t
    for name in spec.key:
        if name == spec.time_field:
            continue
        raw = _raw_name(spec, name)
        if raw not in t.column_names or not pa.types.is_string(t.schema.field(raw).type):
            continue
        vals = [
            v if lp == 0 or v is None else f"{v}~{lp}"
            for v, lp in zip(t[raw].to_pylist(), loops, strict=True)
        ]
        t = t.set_column(t.column_names.index(raw), raw, pa.array(vals, pa.string()))
    return t


def run_live(
    source: Path,
    opts: LiveOptions,
    on_tick: Callable[[LiveCity, LiveStats], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveStats:
    """Set up and drive the live city; `on_tick(city, stats)` is called once per tick."""
    city = LiveCity(source, opts)
    try:
        city.setup()
        return city.run(stop, (lambda st: on_tick(city, st)) if on_tick else None)
    finally:
        city.close()


__all__ = ["LiveCity", "LiveOptions", "LiveStats", "run_live"]
