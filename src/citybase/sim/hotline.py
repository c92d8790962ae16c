"""12345 citizen hotline tickets: complaints in Chinese, clustered at buildings, with bad rows.

The export looks like a real one: Chinese column headers (mapped in the declaration with `source`),
local times as text, and three deliberately broken rows (a non-numeric rating, a timestamp that
does not parse, coordinates outside the world) that the loader must quarantine.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from citybase.sim import variants as var
from citybase.sim.declare import F, Output, spec
from citybase.sim.ids import mobile_numbers
from citybase.sim.rand import pick, stream
from citybase.sim.scale import BadRow
from citybase.sim.vocab import STR, Str, vocab
from citybase.sim.world import START, World

PATH = "data/hotline_events.csv"
# (field, header in the file)
COLUMNS = [
    ("event_id", "工单编号"),
    ("reported_at", "来电时间"),
    ("category", "诉求类别"),
    ("description", "诉求内容"),
    ("status", "办理状态"),
    ("address", "事发地址"),
    ("longitude", "经度"),
    ("latitude", "纬度"),
    ("reporter", "来电人"),
    ("phone", "联系电话"),
    ("satisfaction", "满意度"),
]
_HOURLY = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 4, 7, 9, 9, 8, 6, 7, 8, 8, 7, 6, 5, 5, 4, 3.5, 2.5, 1.5]


def hotline_events(w: World) -> Output:
    rng = stream(w.seed, "hotline")
    v = vocab()
    n = w.scale.hotline_events
    b = w.buildings
    weight = np.array([3.0, 1.5, 2.5, 0.8, 1.0, 1.0, 0.8])[b.use] * (1 + b.frame["floors"].to_numpy() / 10)
    at = pick(rng, n, weight)
    spread = np.where(rng.random(n) < 0.1, 150.0, 20.0)
    xy = b.centroid[at] + rng.normal(0, 1, (n, 2)) * spread[:, None]
    lon, lat = w.frame.to_lonlat(xy[:, 0], xy[:, 1])
    # When: any day of the series, mostly in the daytime; sorted, numbered per day like a real desk.
    days = w.scale.series_days
    secs = rng.integers(0, days, n) * 86_400 + pick(rng, n, _HOURLY) * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(secs, kind="stable")
    secs, at, lon, lat = secs[order], at[order], lon[order], lat[order]
    local = START + secs.astype("timedelta64[s]")
    text_time = np.strings.replace(np.datetime_as_string(local, unit="s").astype(STR), "T", " ")
    day = secs // 86_400
    seq = np.arange(n) - np.searchsorted(day, day)
    ymd = np.strings.replace(np.datetime_as_string(local, unit="D").astype(STR), "-", "")
    event_id = var.join("HL", ymd, np.strings.zfill((seq + 1).astype(STR), 5))
    # What: a category, one of its templates, filled with the building and its road.
    cats = list(v.raw["hotline"])
    cat = pick(rng, n, v.raw["hotline_weights"])
    templates = [t for c in cats for t in v.raw["hotline"][c]]
    first = np.cumsum([0] + [len(v.raw["hotline"][c]) for c in cats])
    per_cat = np.diff(first)
    tmpl = np.array(templates, dtype=STR)[first[cat] + (rng.random(n) * per_cat[cat]).astype(np.int64)]
    place = np.where(rng.random(n) < 0.6, b.frame["name"].to_numpy(dtype=STR)[at], b.road[at])
    text = np.strings.replace(np.strings.replace(tmpl, "{place}", place), "{road}", b.road[at])
    # Status by age: the last days' tickets are still open.
    age_days = days - secs / 86_400
    statuses = v.array("hotline_status")
    status = np.where(age_days < 1, pick(rng, n, [0.6, 0.4, 0, 0]), pick(rng, n, [0.03, 0.12, 0.35, 0.5]))
    rating = np.where(status == 3, pick(rng, n, [0.05, 0.05, 0.15, 0.35, 0.4]) + 1, -1)
    districts = w.admin.districts["name"].to_numpy(dtype=STR)
    address = var.addresses(
        district=districts[b.district[at]],
        district_short=w.admin.district_short[b.district[at]],
        street=w.street_of_building()[at],
        road=b.road[at],
        number=b.number[at],
        building_name=b.frame["name"].to_numpy(dtype=STR)[at],
        tails=[np.full(n, "", dtype=STR)],
        tail_p=[1.0],
        rng=rng,
        mess=0.7,
    )
    people = w.people
    caller = pick(rng, n, np.ones(len(people.sur)))
    reporter = var.person_names(people.sur[caller], people.g1[caller], people.g2[caller], rng, 0.5)
    reporter = np.where(rng.random(n) < 0.3, "匿名", reporter).astype(STR)
    cols: dict[str, Str] = {
        "event_id": event_id,
        "reported_at": text_time,
        "category": np.array(cats, dtype=STR)[cat],
        "description": text,
        "status": statuses[status],
        "address": address,
        "longitude": np.round(lon, 6).astype(STR),
        "latitude": np.round(lat, 6).astype(STR),
        "reporter": reporter,
        "phone": var.phones(mobile_numbers(rng, n), rng, 0.8),
        "satisfaction": rating.astype(STR),
    }
    bad = _break(cols, n)
    header = dict(COLUMNS)
    table = pa.table(
        {
            header[k]: pa.array(
                a.astype(object), pa.string(), mask=(a == "-1") if k == "satisfaction" else None
            )
            for k, a in cols.items()
        }
    )
    sp = spec(
        name="hotline_events",
        title="12345市民服务热线工单",
        description="Citizen hotline tickets: what was reported where and when, and how it was handled.",
        department="citizen-service",
        system="hotline-12345",
        kind="points",
        fields=[
            F("event_id", source="工单编号", required=True),
            F(
                "reported_at",
                "timestamp",
                source="来电时间",
                required=True,
                format="%Y-%m-%d %H:%M:%S",
                description="local time, Asia/Shanghai",
            ),
            F("category", source="诉求类别", enum=cats),
            F("description", source="诉求内容"),
            F("status", source="办理状态", enum=statuses.tolist()),
            F("address", source="事发地址", personal="address"),
            F("longitude", "float", source="经度", unit="degree", min=-180, max=180),
            F("latitude", "float", source="纬度", unit="degree", min=-90, max=90),
            F("reporter", source="来电人", personal="name"),
            F("phone", source="联系电话", personal="phone"),
            F(
                "satisfaction",
                "int",
                source="满意度",
                min=1,
                max=5,
                description="rating after the follow-up call",
            ),
        ],
        time_field="reported_at",
        geometry={"lon": "longitude", "lat": "latitude"},
        address_field="address",
        key=["event_id"],
        sharing="conditional",
        update_cycle="real-time",
    )
    return Output(sp, table, PATH, "csv", bad_rows=bad)


def _break(cols: dict[str, Str], n: int) -> list[BadRow]:
    """Spoil three rows in place; return where, so tests and the demo can point at them."""
    header = dict(COLUMNS)
    rows = sorted({n // 10, n // 2, (9 * n) // 10})
    edits = [
        (rows[0], "satisfaction", "很满意", "not a number in an int field"),
        (rows[1], "reported_at", "2025-02-30 25:61:00", "timestamp does not parse"),
        (rows[2], "longitude", "216.403", "coordinates outside the world"),
        (rows[2], "latitude", "95.120", "coordinates outside the world"),
    ]
    cols["status"][rows[0]] = "已回访"
    out = []
    for row, field, value, reason in edits:  # four cells, not per row
        cols[field][row] = value
        out.append(
            BadRow(
                dataset="hotline_events",
                path=PATH,
                line=row + 2,
                row=row,
                column=header[field],
                value=value,
                reason=reason,
            )
        )
    return out
