"""The decoder's batched fast path (Arrow's JSON reader) gives exactly what the per-message path gives."""

from __future__ import annotations

import json
import random
from typing import Any

import pyarrow as pa
import pytest

from citybase.iot import Device, PayloadField, telemetry_dataset
from citybase.iot.decode import Decoder, Reject, Rows
from citybase.iot.decode_arrow import MIN_GROUP, fast_rows

T0 = 1_764_000_000
SPEC = telemetry_dataset(
    "air", "eco", "aq", {"pm25": "float", "count": "int", "ok": "bool", "status": "string"}
)
SPEC.field("pm25").min = 0.0
SPEC.field("pm25").max = 1000.0
SPEC.field("status").enum = ["fine", "5"]
PAYLOAD = {
    "pm25": PayloadField(field="pm25"),
    "n": PayloadField(field="count", scale=10),
    "ok": PayloadField(field="ok"),
    "s": PayloadField(field="status"),
}
DEVICES = [
    Device(
        id=f"aq-{i}", type="air", department="eco", dataset="air", lon=116 + i / 10, lat=39.9, payload=PAYLOAD
    )
    for i in range(4)
]
# another payload schema in the same dataset: its own group on the fast path
DEVICES.append(
    Device(
        id="q-1", type="air", department="eco", dataset="air", lon=1.0, lat=2.0, payload={"q": PAYLOAD["ok"]}
    )
)


def topic(device: str) -> bytes:
    return f"citybase/eco/{device}/telemetry".encode()


def one_by_one(dec: Decoder, msgs: list[tuple[bytes, bytes, int]]) -> tuple[dict[str, Rows], list[Reject]]:
    out: dict[str, Rows] = {}
    rejects: list[Reject] = []
    for t, p, r in msgs:
        dec.decode(t, p, r, out, rejects)
    return out, rejects


def batched(dec: Decoder, msgs: list[tuple[bytes, bytes, int]]) -> tuple[dict[str, Rows], list[Reject]]:
    out: dict[str, Rows] = {}
    rejects: list[Reject] = []
    dec.decode_many(msgs, out, rejects)
    return out, rejects


def table(out: dict[str, Rows]) -> list[dict[str, Any]]:
    t = out["air"].to_arrow() if "air" in out and len(out["air"]) else pa.table({})
    return sorted(t.to_pylist(), key=lambda r: (r["device"], r["ts"], json.dumps(r, default=str)))


def rejected(rejects: list[Reject]) -> list[tuple[Any, ...]]:
    return sorted((r.dataset, r.topic, r.field, r.value, r.reason, bytes(r.raw)) for r in rejects)


def good(k: int) -> dict[str, Any]:
    return {"ts": T0 + k, "pm25": k % 500 + 0.5, "n": k % 7, "ok": k % 2 == 0, "s": "fine", "extra": [k]}


def test_a_clean_batch_takes_the_fast_path_and_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    dec = Decoder(DEVICES, {"air": SPEC}, tz="Asia/Shanghai")
    msgs = [(topic(f"aq-{k % 4}"), json.dumps(good(k)).encode(), 7) for k in range(200)]
    msgs += [(topic("q-1"), json.dumps({"ts": T0 + k * 1000 + 1, "q": True}).encode(), 7) for k in range(30)]
    calls: list[bool] = []

    def spy(*a: Any) -> bool:
        calls.append(fast_rows(*a))
        return calls[-1]

    monkeypatch.setattr("citybase.iot.decode.fast_rows", spy)
    fast = batched(dec, msgs)
    monkeypatch.undo()
    assert calls == [True, True]  # both payload schemas went through Arrow
    slow = one_by_one(dec, msgs)
    assert table(fast[0]) == table(slow[0]) and len(table(fast[0])) == 230
    assert fast[1] == [] and slow[1] == []
    assert {r["count"] for r in table(fast[0]) if r["device"] != "q-1"} == {10 * (k % 7) for k in range(7)}


BAD_PAYLOADS: list[bytes] = [
    b"{not json",
    b'{"ts": 1, "pm25": "high"}',
    b'{"ts": 1, "pm25": -3}',  # below the minimum
    b'{"ts": 1, "pm25": 5000}',  # above the maximum
    b'{"ts": 1, "n": 1.5}',  # 15.0 after the scale: a whole number, fine
    b'{"ts": 1, "n": 0.15}',  # 1.5: not a whole number
    b'{"ts": 1, "ok": 1}',  # not true/false
    b'{"ts": 1, "pm25": true}',  # a bool is not a number
    b'{"ts": 1, "s": 5}',  # a number where a string is declared: stored as JSON text
    b'{"ts": 1, "s": "bad"}',  # not in the enum
    b'{"ts": 1, "unknown": 1}',  # no known measure
    b'{"ts": "2026-11-24T08:00:00", "pm25": 1}',  # ISO, in the city's time zone
    b'{"ts": "yesterday", "pm25": 1}',
    b'{"ts": 1764000000123, "pm25": 1}',  # milliseconds
    b'{"ts": null, "pm25": 2}',  # the time it was received
    b'{"pm25": 3}',
    b'{"ts": 1, "pm25": 1e400}',  # not finite
    b'{"ts": 1, "pm25": NaN}',
    b'{"ts": 2, "pm25": 1}{"ts": 3, "pm25": 1}',  # two objects: not JSON to json.loads
    b'[{"ts": 4, "pm25": 1}, {"ts": 5, "pm25": -1}]',  # a gateway's array, one bad reading
    b'{"ts": 6,\n "pm25": 1}',  # a newline inside: not one NDJSON line
    b"",
    b"\xff\xfe",
    b'{"ts": 7, "pm25": null, "n": null}',
    b'{"ts": true, "pm25": 1}',
    b'{"ts": 1e300, "pm25": 1}',
    b'{"ts": 8, "pm25": 1, "pm25": 2}',  # a key twice: json.loads keeps the last
    b'{"ts": 9, "n": 10000000000000000000}',  # beyond int64
    b'{"ts": 10, "pm\\u0032\\u0035": 4}',  # an escaped key
    b'{"ts": 11, "pm25": 1, "extra": {"nested": true}}',  # an unknown key of another type
]


@pytest.mark.parametrize("seed", range(6))
def test_mixed_batches_give_the_same_rows_and_rejects_as_one_by_one(seed: int) -> None:
    rnd = random.Random(seed)
    dec = Decoder(DEVICES, {"air": SPEC}, tz="Asia/Shanghai")
    msgs: list[tuple[bytes, bytes, int]] = []
    for k in range(300):
        dev = rnd.choice(["aq-0", "aq-1", "aq-2", "aq-3", "q-1", "ghost"])
        if rnd.random() < 0.03 * (seed + 1):
            payload = rnd.choice(BAD_PAYLOADS)
        elif dev == "q-1":
            payload = json.dumps({"ts": T0 + k, "q": rnd.random() < 0.5}).encode()
        else:
            payload = json.dumps(good(k)).encode()
        msgs.append((topic(dev) if rnd.random() > 0.01 else b"citybase/traffic/aq-1/telemetry", payload, 99))
    fast, slow = batched(dec, msgs), one_by_one(dec, msgs)
    assert table(fast[0]) == table(slow[0])
    assert rejected(fast[1]) == rejected(slow[1])
    assert len(table(fast[0])) > 100


@pytest.mark.parametrize("bad", BAD_PAYLOADS)
def test_one_odd_payload_sends_its_group_to_the_slow_path_with_the_same_result(bad: bytes) -> None:
    dec = Decoder(DEVICES, {"air": SPEC}, tz="Asia/Shanghai")
    msgs = [(topic("aq-1"), json.dumps(good(k)).encode(), 5) for k in range(MIN_GROUP * 2)]
    msgs.insert(MIN_GROUP, (topic("aq-2"), bad, 5))
    fast, slow = batched(dec, msgs), one_by_one(dec, msgs)
    assert table(fast[0]) == table(slow[0])
    assert rejected(fast[1]) == rejected(slow[1])


def test_fast_rows_refuses_what_it_cannot_check_and_touches_nothing() -> None:
    dec = Decoder(DEVICES, {"air": SPEC})
    plan = dec.plans["aq-1"]
    assert not isinstance(plan, str)
    rows = Rows(SPEC)
    payloads = [json.dumps(good(k)).encode() for k in range(20)]
    assert fast_rows([plan] * 21, [*payloads, b'{"ts": 1, "pm25": "x"}'], [0] * 21, rows) is False
    assert len(rows) == 0 and rows.values == {}
    assert fast_rows([plan] * 20, payloads, [0] * 20, rows) is True
    assert len(rows) == 20 and rows.ts[3] == (T0 + 3) * 10**6


def test_values_beyond_64_bits_are_quarantined_not_a_batch_that_never_stores() -> None:
    """Before, these passed the checks and then failed the whole batch's Arrow conversion: the
    bridge retried that batch forever and acknowledged nothing more."""
    dec = Decoder(DEVICES, {"air": SPEC})
    msgs = [
        (topic("aq-1"), b'{"ts": 1e300, "pm25": 1}', 0),
        (topic("aq-1"), b'{"ts": 2, "n": 10000000000000000000}', 0),
        (topic("aq-1"), b'{"ts": 3, "pm25": 2}', 0),
    ]
    for out, rejects in (batched(dec, msgs), one_by_one(dec, msgs)):
        assert [r.reason for r in rejects] == [
            "citybase/eco/aq-1/telemetry: 'ts' is out of range",
            "citybase/eco/aq-1/telemetry: 'n' is out of range",
        ]
        assert out["air"].to_arrow().column("pm25").to_pylist() == [2.0]
