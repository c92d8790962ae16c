"""Ledger entries: canonical JSON bytes, so the same fact always hashes the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from citybase.errors import InputError
from citybase.ledger.tiles import MAX_ENTRY

# Kinds the platform writes; others are allowed (the ledger is a leaf anyone may write to).
INGEST, GRANT, REVOKE, USE, QUARANTINE = "ingest", "grant", "revoke", "use", "quarantine"
# Lake files deleted on purpose (merged away, history expired), listed before they are deleted.
RETIRE = "retire"
# Payload fields indexed for `find`: a batch id, a content digest, a grant, use or request id.
KEY_FIELDS = ("batch", "digest", "id", "grant", "use", "request")
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(kind: str, payload: dict[str, Any], time: str | None = None) -> bytes:
    """`{"data":<payload>,"kind":...,"time":...}` with sorted keys, no spaces, UTF-8, no NaN.

    The payload is nested so that no field of a writer's fact can clash with the ledger's own.

    >>> encode("grant", {"id": "g1"}, time="2026-01-01T00:00:00.000000Z")
    b'{"data":{"id":"g1"},"kind":"grant","time":"2026-01-01T00:00:00.000000Z"}'
    """
    if not kind or not isinstance(kind, str):
        raise InputError("ledger entry kind must be a non-empty string")
    if not isinstance(payload, dict):
        raise InputError("ledger payload must be a JSON object")
    try:
        data = _ENCODER.encode({"data": payload, "kind": kind, "time": time or now()}).encode()
    except (TypeError, ValueError) as e:
        raise InputError(f"ledger payload is not plain JSON: {e}") from e
    if len(data) > MAX_ENTRY:
        raise InputError(
            f"ledger entry is {len(data)} bytes, over {MAX_ENTRY}: split it, or log a manifest digest"
        )
    return data


def decode(data: bytes) -> dict[str, Any]:
    """An entry as `{"kind", "time", "data"}`; raise InputError if it is not one."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        raise InputError("ledger entry is not a {kind, time, data} object")
    return obj


def keys_of(payload: dict[str, Any]) -> list[str | bytes]:
    """The lookup keys of an entry: the values of its indexed payload fields, as text."""
    return [str(payload[k]) for k in KEY_FIELDS if isinstance(payload.get(k), str | int)]
