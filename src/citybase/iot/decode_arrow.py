"""The batched fast path of the decoder: many single-reading payloads parsed by Arrow in one call.

`Decoder.decode` checks one message at a time in Python (about 10 µs a message here, most of it the
per-reading checks, not the JSON parse). A batch of messages from devices with the same payload
schema is instead joined into NDJSON, parsed by `pyarrow.json` once, and checked column by column
with numpy: about 1 µs a message.

The fast path only ever accepts: a group that is not plainly valid (a parse error, a type Arrow did
not infer as the schema wants, a value out of range, a missing required value, a reading with no
known measure, an ISO `ts`) is handed back whole to the per-message path, which finds the exact
problem and quarantines just those messages with the same reasons as always. So the rows stored
are the same either way; only the time spent differs. tests/test_iot_units.py checks that both
paths give the same rows and rejects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

if TYPE_CHECKING:
    from citybase.iot.decode import Rows, _Measure, _Plan

#: Groups smaller than this take the per-message path (Arrow's fixed cost is not worth it).
MIN_GROUP = 16
_NUMERIC = (pa.types.is_integer, pa.types.is_floating)
_INT64_US_MAX = 9.2e18  # (under 2**63: the rare ones between take the slow path)


def fast_rows(
    plans: Sequence[_Plan], payloads: Sequence[bytes | bytearray], received: Sequence[int], rows: Rows
) -> bool:
    """Append the readings of `payloads` (one JSON object each, devices `plans` sharing one
    payload schema) to `rows` and return True, or touch nothing and return False."""
    measures = plans[0].measures
    try:
        t = pj.read_json(
            pa.BufferReader(b"\n".join(payloads)),
            read_options=pj.ReadOptions(use_threads=False, block_size=1 << 26),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return False
    n = len(payloads)
    if t.num_rows != n:
        return False  # e.g. two objects on one line
    names = t.column_names
    cols: list[tuple[str, list[Any]]] = []
    known = np.zeros(n, dtype=bool)
    for m in measures:
        if m.key not in names:
            if m.required:
                return False
            cols.append((m.field, [None] * n))
            continue
        got = _measure(m, t.column(m.key).combine_chunks())
        if got is None:
            return False
        values, valid = got
        known |= valid
        cols.append((m.field, values))
    if not known.all():
        return False  # a reading with none of the device's measures: the slow path says so
    us = _times(t.column("ts").combine_chunks() if "ts" in names else None, received)
    if us is None:
        return False
    rows.extend(
        [p.device.id for p in plans], us, [p.device.lon for p in plans], [p.device.lat for p in plans], cols
    )
    return True


def _measure(m: _Measure, a: pa.Array) -> tuple[list[Any], np.ndarray[Any, Any]] | None:
    from citybase.iot.decode import _BOOL, _INT, _NUM

    typ = a.type
    n = len(a)
    if pa.types.is_null(typ):  # the key is there but null in every reading of the group
        return None if m.required else ([None] * n, np.zeros(n, dtype=bool))
    if a.null_count and m.required:
        return None
    valid = np.ones(n, dtype=bool) if a.null_count == 0 else ~a.is_null().to_numpy(zero_copy_only=False)
    if m.kind == _NUM or m.kind == _INT:
        if not any(f(typ) for f in _NUMERIC):
            return None
        ints = pa.types.is_integer(typ) and m.scale == 1.0
        x = a.cast(pa.float64()).fill_null(0.0).to_numpy()
        if m.scale != 1.0:
            x = x * m.scale
        if not np.isfinite(x).all():
            return None
        if m.kind == _INT and not ints and (x != np.floor(x)).any():
            return None
        check = x[valid]
        if m.lo is not None and (check < m.lo).any():
            return None
        if m.hi is not None and (check > m.hi).any():
            return None
        if m.kind == _INT:
            if ints:
                out: list[Any] = a.to_pylist()
            else:
                if (np.abs(x) > _INT64_US_MAX).any():
                    return None
                out = x.astype(np.int64).tolist()
        else:
            out = x.tolist()
        if a.null_count:
            out = [v if ok else None for v, ok in zip(out, valid.tolist(), strict=True)]
        return out, valid
    if m.kind == _BOOL:
        return (a.to_pylist(), valid) if pa.types.is_boolean(typ) else None
    if not pa.types.is_string(typ):
        return None  # the slow path writes other JSON values as JSON text
    out = a.to_pylist()
    if m.enum is not None and any(v is not None and v not in m.enum for v in out):
        return None
    return out, valid


def _times(a: pa.Array | None, received: Sequence[int]) -> list[int] | None:
    """Unix microseconds as the slow path computes them: seconds, or milliseconds above 10^11."""
    if a is None or pa.types.is_null(a.type):
        return list(received)
    typ = a.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        return None  # ISO strings (Arrow may even read them as timestamps): the slow path
    if pa.types.is_integer(typ):
        i = a.cast(pa.int64()).fill_null(0).to_numpy()
        if (np.abs(i) > 2**53).any():
            return None  # beyond exact float64: the slow path's int arithmetic differs
        ms = np.abs(i) > 10**11
        us = i * 1_000_000
        if ms.any():
            us[ms] = np.round(i[ms] / 1000 * 1_000_000).astype(np.int64)
    else:
        f = a.fill_null(0.0).to_numpy()
        if not np.isfinite(f).all():
            return None
        sec = np.where(np.abs(f) > 1e11, f / 1000, f)
        x = np.round(sec * 1_000_000)
        if (np.abs(x) > _INT64_US_MAX).any():
            return None
        us = x.astype(np.int64)
    out: list[int] = us.tolist()
    if a.null_count:
        missing = a.is_null().to_numpy(zero_copy_only=False)
        for k in np.flatnonzero(missing).tolist():
            out[k] = received[k]
    return out
