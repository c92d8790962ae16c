"""The IoT box without a broker: payload decoding, rule state machines, registries and YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citybase.errors import DeclarationError, InputError, NotFound
from citybase.iot import (
    Device,
    DeviceRegistry,
    PayloadField,
    Rule,
    RuleBook,
    read_devices,
    read_rules,
    telemetry_dataset,
)
from citybase.iot.bridge import BrokerUrl
from citybase.iot.decode import Decoder, Reject, Rows
from citybase.iot.devices import check_device
from citybase.iot.rules import RuleEngine, check_rule
from citybase.meta import open_meta

T0 = 1_764_000_000
SPEC = telemetry_dataset("air", "eco", "aq", {"pm25": "float", "count": "int", "ok": "bool"})
DEV = Device(
    id="aq-1",
    type="air",
    department="eco",
    dataset="air",
    lon=116.4,
    lat=39.9,
    payload={
        "pm25": PayloadField(field="pm25"),
        "n": PayloadField(field="count", scale=10),
        "ok": PayloadField(field="ok"),
    },
)


def decode(topic: str, payload: object, *, tz: str = "UTC") -> tuple[dict[str, Rows], list[Reject]]:
    out: dict[str, Rows] = {}
    rejects: list[Reject] = []
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    Decoder([DEV], {"air": SPEC}, tz=tz).decode(topic, body, 42, out, rejects)
    return out, rejects


TOPIC = "citybase/eco/aq-1/telemetry"


def test_decoding_times_scales_and_types() -> None:
    out, rejects = decode(
        TOPIC,
        [
            {"ts": T0, "pm25": 1.5, "n": 3},
            {"ts": T0 * 1000 + 5, "ok": True},
            {"ts": "2025-11-25T00:00:00", "pm25": 2},
            {"pm25": 3.0, "extra": "ignored"},
        ],
        tz="Asia/Shanghai",
    )
    assert rejects == []
    rows = out["air"]
    assert rows.ts == [T0 * 10**6, T0 * 10**6 + 5000, T0 * 10**6, 42]  # naive ISO: the city's zone
    assert rows.values == {
        "pm25": [1.5, None, 2, 3.0],
        "count": [30, None, None, None],
        "ok": [None, True, None, None],
    }
    t = rows.to_arrow()
    assert t.column("ts").type.tz == "UTC" and t.column("lon").to_pylist() == [116.4] * 4


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"pm25": "x"}, "'pm25' is not a number"),
        ({"pm25": True}, "'pm25' is not a number"),
        ({"n": 0.15}, "'n' is not a whole number"),
        ({"ok": 1}, "'ok' is not true/false"),
        ({"pm25": 1, "ts": "yesterday"}, "'ts' is not an ISO 8601 time or Unix seconds"),
        ({"other": 1}, "no known measure (expected some of ['pm25', 'n', 'ok'])"),
        ([1], "a reading must be a JSON object"),
        (b"\xff\xfe", "payload is not JSON"),
    ],
)
def test_bad_readings_are_rejected_with_topic_and_reason(payload: object, reason: str) -> None:
    out, rejects = decode(TOPIC, payload)
    assert len(rejects) == 1 and not len(out.get("air", Rows(SPEC)))
    assert rejects[0].reason.startswith(f"{TOPIC}: {reason}")
    assert rejects[0].dataset == "air"


def test_topics_outside_the_scheme_and_unknown_devices() -> None:
    for topic, reason in [
        ("citybase/eco/aq-1/status", "citybase/eco/aq-1/status: not a telemetry topic"),
        ("other/eco/aq-1/telemetry", "other/eco/aq-1/telemetry: not a telemetry topic"),
        ("citybase/eco/aq-2/telemetry", "citybase/eco/aq-2/telemetry: unknown device 'aq-2'"),
    ]:
        _, rejects = decode(topic, {"pm25": 1})
        assert [(r.dataset, r.reason) for r in rejects] == [("_mqtt", reason)]


def test_devices_of_one_dataset_with_different_measures_stay_aligned() -> None:
    other = DEV.model_copy(update={"id": "aq-2", "payload": {"q": DEV.payload["ok"]}})
    dec = Decoder([DEV, other], {"air": SPEC})
    out: dict[str, Rows] = {}
    rejects: list[Reject] = []
    dec.decode(TOPIC, b'{"ts": 1, "pm25": 1.0}', 0, out, rejects)
    dec.decode("citybase/eco/aq-2/telemetry", b'{"ts": 2, "q": false}', 0, out, rejects)
    dec.decode(TOPIC, b'{"ts": 3, "n": 1}', 0, out, rejects)
    assert out["air"].to_arrow().select(["device", "pm25", "count", "ok"]).to_pylist() == [
        {"device": "aq-1", "pm25": 1.0, "count": None, "ok": None},
        {"device": "aq-2", "pm25": None, "count": None, "ok": False},
        {"device": "aq-1", "pm25": None, "count": 10, "ok": None},
    ]


def rows(values: list[float], device: str = "aq-1", start: int = 0) -> dict[str, Rows]:
    r = Rows(SPEC, values={"pm25": []})
    for i, v in enumerate(values):
        r.device.append(device)
        r.ts.append((T0 + start + i) * 10**6)
        r.lon.append(1.0)
        r.lat.append(2.0)
        r.values["pm25"].append(v)
    return {"air": r}


def raised(engine: RuleEngine, values: list[float], start: int = 0) -> list[float]:
    alarms, changed = engine.evaluate(rows(values, start=start))
    engine.commit(changed)
    return [a["value"] for a in alarms]


def test_one_alarm_per_crossing_with_hysteresis() -> None:
    e = RuleEngine([Rule(id="r", dataset="air", field="pm25", op=">", value=75, hysteresis=5)])
    assert raised(e, [50, 80, 90, 71, 76, 70, 76]) == [80, 76]  # 71 is inside the band; 70 clears
    assert raised(e, [90], start=3) == []  # a redelivered older reading changes nothing
    assert raised(e, [74, 60, 99], start=10) == [99]


def test_duration_and_the_other_operators() -> None:
    e = RuleEngine([Rule(id="r", dataset="air", field="pm25", op="<", value=10, duration_s=2)])
    assert raised(e, [5, 5, 20, 5, 5, 5, 5]) == [5]  # held 0..1 s (no), then 3..5 s (yes, at 5 s)
    eq = RuleEngine([Rule(id="r", dataset="air", field="pm25", op="==", value=1)])
    assert raised(eq, [1, 1, 0, 1]) == [1, 1]


def test_evaluate_does_not_change_state_until_commit() -> None:
    e = RuleEngine([Rule(id="r", dataset="air", field="pm25", op=">=", value=1)])
    alarms, _ = e.evaluate(rows([2]))
    assert len(alarms) == 1
    assert len(e.evaluate(rows([2]))[0]) == 1  # not committed: a retried batch raises it again
    e.seed({"aq-1": ((T0 + 5) * 10**6, {"pm25": 3.0})})
    assert raised(e, [2], start=6) == []  # already active at restart


def test_registries_and_checks(tmp_path: Path) -> None:
    engine = open_meta("sqlite://")
    reg = DeviceRegistry(engine)
    reg.add(DEV)
    reg.add(DEV.model_copy(update={"type": "air2"}))
    assert [d.type for d in reg.list()] == ["air2"] and reg.list("traffic") == []
    reg.remove("aq-1")
    with pytest.raises(NotFound):
        reg.get("aq-1")
    check_device(DEV, SPEC)
    with pytest.raises(InputError, match="cannot feed dataset"):
        check_device(DEV.model_copy(update={"department": "traffic"}), SPEC)
    with pytest.raises(InputError, match="not a measure"):
        check_device(
            DEV.model_copy(update={"payload": {"x": DEV.payload["ok"].model_copy(update={"field": "ts"})}}),
            SPEC,
        )
    book = RuleBook(engine)
    rule = check_rule(Rule(id="r", dataset="air", field="pm25", op=">", value=1), SPEC)
    assert book.add(rule).department == "eco" and book.list("eco") == [rule]
    with pytest.raises(InputError):
        check_rule(Rule(id="r", dataset="air", field="device", op=">", value=1), SPEC)


def test_yaml_files(tmp_path: Path) -> None:
    f = tmp_path / "devices.yaml"
    f.write_text(
        "devices:\n  - {id: aq-1, type: air, department: eco, dataset: air, lon: 116.4, lat: 39.9,\n"
        "     payload: {pm25: pm25, t: {field: temp, scale: 0.1}}}\n"
    )
    (d,) = read_devices(f)
    assert d.payload["t"].scale == 0.1
    f.write_text("devices:\n  - {id: 'a/b', type: air}\n")
    with pytest.raises(DeclarationError, match=r"invalid device #1\n  id: Value error"):
        read_devices(f)
    r = tmp_path / "rules.yaml"
    r.write_text("rules:\n  - {id: hi, dataset: air, field: pm25, op: '>', value: 75, severity: critical}\n")
    assert read_rules(r)[0].severity == "critical"
    r.write_text("rules:\n  - {id: hi, dataset: air, field: pm25, op: '=>', value: 75}\n")
    with pytest.raises(DeclarationError, match="invalid rule #1"):
        read_rules(r)


def test_broker_urls_never_show_the_password() -> None:
    u = BrokerUrl.parse("mqtts://bridge:p%40ss@broker.city")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("broker.city", 8883, True, "bridge", "p@ss")
    assert "p@ss" not in repr(u) and "p@ss" not in u.redacted
    assert BrokerUrl.parse("mqtt://127.0.0.1").port == 1883
    with pytest.raises(InputError):
        BrokerUrl.parse("http://x")
