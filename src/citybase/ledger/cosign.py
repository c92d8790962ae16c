"""The log side of tlog-witness: submit a checkpoint to witnesses and attach their cosignatures."""

from __future__ import annotations

import base64
import json
import logging
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from citybase.errors import InputError
from citybase.ledger.checkpoint import Checkpoint
from citybase.ledger.note import NoteError, Verifier, open_note, split_note

logger = logging.getLogger(__name__)


class ProofSource(Protocol):
    path: Path

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]: ...


@dataclass(frozen=True)
class WitnessRef:
    """A witness the log submits to: its submission prefix URL and its cosigner verifier key."""

    url: str
    verifier: Verifier

    @classmethod
    def parse(cls, spec: str) -> WitnessRef:
        """`<vkey>@<url>`, e.g. `health.city.example/w+1a2b3c4d+BA...=@http://10.0.0.5:7380`."""
        m = re.fullmatch(r"(.+?)@(https?://\S+)", spec.strip())
        if not m:
            raise InputError(f"witness must be given as <vkey>@<url>, got {spec!r}")
        return cls(m.group(2).rstrip("/"), Verifier.from_vkey(m.group(1)))


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")


def request_cosignature(
    log: ProofSource, note: str, witness: WitnessRef, old: int, timeout: float = 5.0
) -> tuple[list[str], int]:
    """Ask one witness to cosign `note`, starting from the size we believe it holds (`old`); follow
    one 409 to the size it really holds. Returns (verified cosignature lines, size it now holds)."""
    cp = Checkpoint.parse(note)
    for _ in range(2):
        proof = log.consistency_proof(old, cp.size) if 0 < old < cp.size else []
        body = f"old {old}\n" + "".join(f"{p}\n" for p in _b64(proof)) + "\n" + note
        status, text = _post(f"{witness.url}/add-checkpoint", body.encode(), timeout)
        if status == 409 and re.fullmatch(r"\d+\n", text) and int(text) <= cp.size:
            old = int(text)
            continue
        if status != 200:
            raise NoteError(f"witness {witness.verifier.name} answered {status}: {text.strip()}")
        text_part, _ = split_note(note)
        opened = open_note(text_part + "\n" + text, [witness.verifier])
        lines = [
            s.line
            for s in opened.signatures
            if (s.name, s.key_id) == (witness.verifier.name, witness.verifier.key_id)
        ]
        return lines, cp.size
    raise NoteError(f"witness {witness.verifier.name} keeps answering 409")


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def cosign(log: ProofSource, note: str, witnesses: list[WitnessRef], timeout: float = 5.0) -> str:
    """Submit `note` to every witness in parallel and return it with the cosignatures that came back.

    A witness that is down or refuses is logged and skipped: the log keeps publishing, and clients
    that need a quorum of cosignatures simply do not accept the checkpoint until witnesses catch up.
    """
    state_file = log.path / "witnesses.json"
    try:
        known: dict[str, int] = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        known = {}

    def one(w: WitnessRef) -> tuple[WitnessRef, list[str]]:
        try:
            lines, size = request_cosignature(log, note, w, known.get(w.verifier.vkey, 0), timeout)
            known[w.verifier.vkey] = size
            return w, lines
        except (OSError, NoteError, InputError) as e:
            logger.warning("witness %s at %s did not cosign: %s", w.verifier.name, w.url, e)
            return w, []

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(witnesses)))) as pool:
        results = list(pool.map(one, witnesses))
    state_file.write_text(json.dumps(known, sort_keys=True))
    have = set(note.splitlines(keepends=True))
    extra = [line for _, lines in results for line in lines if line not in have]
    return note + "".join(extra)
