"""Fixed sensors: air-quality stations (hourly) and traffic loop detectors (5-minute).

Series are built as (sensor x time) matrices: a shared regional signal, a per-sensor offset, a daily
(and weekly) cycle, smooth and white noise, then holes: scattered missing values and outages of
whole stretches, as real feeds have.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import shapely

from citybase.sim.declare import F, Output, spec
from citybase.sim.frame import sample_in
from citybase.sim.rand import F64, Bool, Times, pick, smooth_noise, stream, weighted_choice
from citybase.sim.vocab import STR, Str, vocab, words
from citybase.sim.world import START, World

TZ = "Asia/Shanghai"


def _times(days: int, interval_s: int) -> Times:
    n = days * 86_400 // interval_s
    return START + np.arange(n) * np.timedelta64(interval_s, "s")


def _local_ts(local: Times) -> pa.Array:
    """Local wall-clock times as timezone-aware Arrow timestamps (stored as UTC instants)."""
    utc = (local - np.timedelta64(8, "h")).astype("datetime64[us]")
    return pa.array(utc, pa.timestamp("us", tz=TZ))


def _outages(rng: np.random.Generator, shape: tuple[int, int], share: float, longest: int) -> Bool:
    """Whole stretches of missing readings: a sensor offline for a while."""
    k, t = shape
    hit = rng.random(k) < share
    start = rng.integers(0, t, k)
    length = rng.integers(max(longest // 8, 1), longest + 1, k)
    j = np.arange(t)[None, :]
    out: Bool = hit[:, None] & (j >= start[:, None]) & (j < (start + length)[:, None])
    return out


def _ids(prefix: str, n: int, width: int = 3) -> Str:
    out: Str = np.strings.add(prefix, np.strings.zfill(np.arange(1, n + 1).astype(STR), width))
    return out


def _nullable(a: F64, missing: Bool, decimals: int) -> pa.Array:
    return pa.array(np.round(a, decimals), pa.float64(), mask=missing | ~np.isfinite(a))


def air_quality(w: World) -> tuple[Output, Output]:
    """Air-quality stations (CSV) and their hourly readings (Parquet)."""
    rng = stream(w.seed, "air_quality")
    s = w.scale
    k = s.aq_stations
    xy = sample_in(w.boundary, k, rng, w.frame)
    lon, lat = w.frame.to_lonlat(xy[:, 0], xy[:, 1])
    stype = pick(rng, k, [0.5, 0.25, 0.15, 0.1])
    sid = _ids("AQ", k)
    names = np.strings.add(words(rng, k), "监测站")
    stations = pa.table(
        {
            "station_id": sid.astype(object),
            "station_name": names.astype(object),
            "station_type": vocab().array("station_types")[stype].astype(object),
            "longitude": np.round(lon, 6),
            "latitude": np.round(lat, 6),
            "altitude_m": np.round(rng.uniform(38, 70, k), 1),
            "installed_on": pa.array(np.datetime64("2012-06-01") + rng.integers(0, 3000, k), pa.date32()),
        }
    )
    st_spec = spec(
        name="air_quality_stations",
        title="空气质量监测站点",
        description="Where the air-quality stations stand; the series refer to them by station_id.",
        department="eco-env",
        system="aq-monitoring",
        kind="points",
        fields=[
            F("station_id", required=True),
            F("station_name"),
            F("station_type", enum=vocab().raw["station_types"]),
            F("longitude", "float", unit="degree", min=-180, max=180, required=True),
            F("latitude", "float", unit="degree", min=-90, max=90, required=True),
            F("altitude_m", "float", unit="m"),
            F("installed_on", "date"),
        ],
        geometry={"lon": "longitude", "lat": "latitude"},
        key=["station_id"],
        sharing="unconditional",
        update_cycle="yearly",
    )
    # Readings: (station x hour) matrices.
    local = _times(s.series_days, s.aq_interval_s)
    t = len(local)
    hour = ((local - local.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.float64) / 3600.0)[
        None, :
    ]
    day = (np.arange(t) * s.aq_interval_s / 86_400.0)[None, :]
    steps_per_day = 86_400 / s.aq_interval_s
    regional = smooth_noise(rng, (1, t), 0.8 * steps_per_day)
    local_n = smooth_noise(rng, (k, t), 0.15 * steps_per_day)
    centre = np.exp(-np.hypot(xy[:, 0], xy[:, 1]) / 12_000.0)[:, None]
    traffic = (stype == 1)[:, None]
    log_pm = (
        np.log(55.0)
        + 0.75 * regional
        + 0.12 * local_n
        + 0.25 * centre
        + rng.normal(0, 0.12, (k, 1))
        + 0.22 * np.cos(2 * np.pi * (hour - 23) / 24)
        + 0.05 * rng.standard_normal((k, t))
    )
    pm25 = np.exp(log_pm)
    pm10 = pm25 * rng.uniform(1.25, 1.7, (k, 1)) + 12 * np.exp(smooth_noise(rng, (k, t), steps_per_day / 3))
    rush = np.exp(-((hour - 8) ** 2) / 2) + np.exp(-((hour - 18.5) ** 2) / 2.5)
    no2 = (22 + 18 * centre + 14 * traffic) * (0.8 + 0.6 * rush) * np.exp(0.15 * local_n + 0.3 * regional)
    sun = np.clip(np.sin(np.pi * (hour - 7) / 12), 0, None) ** 1.5
    o3 = np.clip(18 + 85 * sun * np.exp(-0.2 * regional) - 0.25 * no2 + rng.normal(0, 4, (k, t)), 2, None)
    temp = (
        3.0
        + 0.35 * day
        + 6.5 * np.sin(2 * np.pi * (hour - 8) / 24)
        + 1.5 * regional
        + rng.normal(0, 0.4, (k, 1))
    )
    humidity = np.clip(
        45 - 18 * np.sin(2 * np.pi * (hour - 8) / 24) + 10 * regional + rng.normal(0, 3, (k, t)), 8, 100
    )
    out_mask = _outages(rng, (k, t), 0.3, int(2 * steps_per_day))
    cols = {
        "pm25": (pm25, 1),
        "pm10": (pm10, 1),
        "no2": (no2, 1),
        "o3": (o3, 1),
        "temperature": (temp, 1),
        "humidity": (humidity, 0),
    }
    data: dict[str, pa.Array] = {
        "station_id": pa.array(np.repeat(sid, t).astype(object), pa.string()),
        "ts": _local_ts(np.tile(local, k)),
    }
    for name, (values, dec) in cols.items():  # six pollutants, not per row
        miss = out_mask | (rng.random((k, t)) < 0.015)
        data[name] = _nullable(values.ravel(), miss.ravel(), dec)
    readings = pa.table(data)
    aq_spec = spec(
        name="air_quality",
        title="空气质量小时监测数据",
        description="Hourly air-quality and weather readings of the monitoring stations.",
        department="eco-env",
        system="aq-monitoring",
        kind="series",
        fields=[
            F("station_id", required=True),
            F("ts", "timestamp", required=True, description="start of the hour, Asia/Shanghai"),
            F("pm25", "float", unit="µg/m³", min=0, max=2000),
            F("pm10", "float", unit="µg/m³", min=0, max=3000),
            F("no2", "float", unit="µg/m³", min=0, max=1000),
            F("o3", "float", unit="µg/m³", min=0, max=1000),
            F("temperature", "float", unit="°C", min=-40, max=50),
            F("humidity", "float", unit="%", min=0, max=100),
        ],
        time_field="ts",
        object_field="station_id",
        key=["station_id", "ts"],
        sharing="unconditional",
        update_cycle="hourly",
    )
    return (
        Output(st_spec, stations, "data/air_quality_stations.csv", "csv"),
        Output(aq_spec, readings, "data/air_quality.parquet", "parquet"),
    )


def traffic_flow(w: World) -> tuple[Output, Output]:
    """Loop detectors on road segments (GeoJSON) and their 5-minute speed and volume (Parquet)."""
    rng = stream(w.seed, "traffic")
    s, r = w.scale, w.roads
    weight = np.where(r.arterial, 6.0, 1.0) * (r.length > 60)
    k = min(s.traffic_detectors, int((weight > 0).sum()))
    edge = np.sort(weighted_choice(rng, weight, k))
    a, b = r.xy[r.edges[edge, 0]], r.xy[r.edges[edge, 1]]
    frac = rng.uniform(0.3, 0.7, k)[:, None]
    pos = a + (b - a) * frac
    lon, lat = w.frame.to_lonlat(pos[:, 0], pos[:, 1])
    heading = np.degrees(np.arctan2(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])) % 360
    dirs = np.array(["北向", "东北向", "东向", "东南向", "南向", "西南向", "西向", "西北向"], dtype=STR)
    did = _ids("TD", k, 4)
    lanes = np.where(r.arterial[edge], 3, 1)
    detectors = pa.table(
        {
            "detector_id": did.astype(object),
            "road_name": r.line_names[r.line[edge]].astype(object),
            "road_id": np.strings.add("R", np.strings.zfill((edge + 1).astype(STR), 6)).astype(object),
            "direction": dirs[np.round(heading / 45).astype(np.int64) % 8].astype(object),
            "lanes": lanes.astype(np.int64),
        }
    )
    geometry = shapely.points(lon, lat)
    det_spec = spec(
        name="traffic_detectors",
        title="交通流量检测器",
        description="Loop detectors, each on one road segment (road_id as in roads).",
        department="transport",
        system="traffic-monitoring",
        kind="points",
        fields=[
            F("detector_id", required=True),
            F("road_name"),
            F("road_id"),
            F("direction"),
            F("lanes", "int", min=1),
            F("geometry", description="GeoJSON point geometry"),
        ],
        geometry={"field": "geometry", "encoding": "wkb"},
        key=["detector_id"],
        sharing="unconditional",
        update_cycle="yearly",
    )
    local = _times(s.series_days, s.traffic_interval_s)
    t = len(local)
    hour = ((local - local.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.float64) / 3600.0)[
        None, :
    ]
    weekday = ((local.astype("datetime64[D]").astype(np.int64) + 3) % 7)[None, :]  # 0 = Monday
    workday = weekday < 5
    peaks = 0.95 * np.exp(-((hour - 8.0) ** 2) / 0.8) + 0.9 * np.exp(-((hour - 18.0) ** 2) / 1.2)
    day_load = np.clip(np.sin(np.pi * (hour - 5.5) / 17.5), 0, None)
    demand = np.where(workday, 0.15 + 0.45 * day_load + peaks, 0.12 + 0.6 * day_load**1.5) * rng.uniform(
        0.6, 1.2, (k, 1)
    )
    demand = demand * np.exp(0.1 * smooth_noise(rng, (k, t), 6.0))
    free = np.where(r.arterial[edge], 62.0, 38.0)[:, None] * rng.uniform(0.9, 1.1, (k, 1))
    speed = np.clip(free * (1 - 0.55 * np.clip(demand, 0, 1.3) ** 2) + rng.normal(0, 2.5, (k, t)), 3, None)
    per_interval = 1800.0 * lanes[:, None] * s.traffic_interval_s / 3600.0
    volume = rng.poisson(np.clip(demand, 0.01, None) * 0.55 * per_interval)
    occupancy = np.clip(100 * volume / per_interval * 6.5 / np.maximum(speed, 5) * 2.2, 0, 100)
    out_mask = _outages(rng, (k, t), 0.25, int(3 * 3600 / s.traffic_interval_s))
    miss = out_mask | (rng.random((k, t)) < 0.004)
    readings = pa.table(
        {
            "detector_id": pa.array(np.repeat(did, t).astype(object), pa.string()),
            "ts": _local_ts(np.tile(local, k)),
            "speed": _nullable(speed.ravel(), miss.ravel(), 1),
            "volume": pa.array(volume.ravel(), pa.int64(), mask=miss.ravel()),
            "occupancy": _nullable(occupancy.ravel(), miss.ravel(), 1),
        }
    )
    flow_spec = spec(
        name="traffic_flow",
        title="路段交通流量",
        description="Speed, volume and occupancy per detector and interval; rush hours on working days.",
        department="transport",
        system="traffic-monitoring",
        kind="series",
        fields=[
            F("detector_id", required=True),
            F("ts", "timestamp", required=True, description="start of the interval, Asia/Shanghai"),
            F("speed", "float", unit="km/h", min=0, max=200),
            F("volume", "int", unit=f"vehicles/{s.traffic_interval_s // 60} min", min=0),
            F("occupancy", "float", unit="%", min=0, max=100),
        ],
        time_field="ts",
        object_field="detector_id",
        key=["detector_id", "ts"],
        sharing="unconditional",
        update_cycle="real-time",
    )
    return (
        Output(det_spec, detectors, "data/traffic_detectors.geojson", "geojson", geometry=geometry),
        Output(flow_spec, readings, "data/traffic_flow.parquet", "parquet"),
    )
