"""A C2SP tlog-witness: cosigns a log's checkpoint only if it extends the last one it cosigned.

Each department can run one (`citybase witness`). The witness keeps, per log origin, the latest
checkpoint it cosigned in SQLite (fsynced before it answers), so a log that forks its history (shows
two departments different trees) cannot get the second view cosigned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from citybase.ledger.checkpoint import Checkpoint
from citybase.ledger.keys import load_or_create
from citybase.ledger.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from citybase.ledger.note import COSIGNATURE_V1, NoteError, Verifier, open_note, split_note

MAX_BODY = 64 * 1024
MAX_PROOF = 63
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to add-checkpoint: status, body and content type (kept HTTP-free for tests)."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Witness:
    """The witness state and rules; `witness_app` puts it on HTTP."""

    def __init__(self, root: Path, name: str, log_keys: list[Verifier]) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.signer = load_or_create(root / "witness.key", name, COSIGNATURE_V1)
        self.logs: dict[str, list[Verifier]] = {}
        for v in log_keys:
            self.logs.setdefault(v.name, []).append(v)
        self._db = sqlite3.connect(root / "witness.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS latest (origin TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " root BLOB NOT NULL, note TEXT NOT NULL)"
        )
        # Check-then-persist must be atomic (the spec's rollback race), so one request at a time.
        self._lock = threading.RLock()

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    def latest(self, origin: str) -> tuple[int, bytes, str] | None:
        """(size, root, cosigned note) of the latest checkpoint cosigned for `origin`."""
        with self._lock:  # one connection, shared by the server's worker threads
            row = self._db.execute(
                "SELECT size, root, note FROM latest WHERE origin = ?", (origin,)
            ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def add_checkpoint(self, body: bytes) -> Answer:
        """The add-checkpoint rules of C2SP tlog-witness, in the spec's order."""
        try:
            old, proof, note = _parse_request(body)
            text, _ = split_note(note)
            origin = text.split("\n", 1)[0]
        except (ValueError, NoteError) as e:
            return Answer(400, f"malformed request: {e}\n")
        keys = self.logs.get(origin)
        if not keys:
            return Answer(404, f"unknown log origin {origin!r}\n")
        try:
            opened = open_note(note, keys)
        except NoteError as e:
            return Answer(403, f"{e}\n")
        try:
            cp = Checkpoint.parse(opened.text)
        except NoteError as e:
            return Answer(400, f"malformed checkpoint: {e}\n")
        if old > cp.size:
            return Answer(400, f"old size {old} is above the checkpoint size {cp.size}\n")
        with self._lock:
            known = self.latest(origin)
            known_size, known_root = (0, EMPTY_ROOT) if known is None else known[:2]
            if old != known_size:
                return Answer(409, f"{known_size}\n", SIZE_TYPE)
            if cp.size == 0 and cp.root != EMPTY_ROOT:
                return Answer(422, "a checkpoint of size 0 must have the empty root\n")
            try:
                if old == 0:
                    if proof:
                        raise ProofError("the proof from size 0 must be empty")
                else:
                    verify_consistency(old, cp.size, known_root, cp.root, proof)
            except ProofError as e:
                return Answer(422, f"not consistent with the cosigned checkpoint of size {old}: {e}\n")
            line = self.signer.signature_line(opened.text)
            stored = (
                opened.text
                + "\n"
                + "".join(
                    s.line
                    for s in opened.signatures
                    if any((s.name, s.key_id) == (k.name, k.key_id) for k in keys)
                )
                + line
            )
            self._db.execute(
                "INSERT INTO latest (origin, size, root, note) VALUES (?, ?, ?, ?) ON CONFLICT (origin)"
                " DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note",
                (origin, cp.size, cp.root, stored),
            )
        return Answer(200, line)

    def close(self) -> None:
        self._db.close()


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    text = body.decode("utf-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("no empty line before the checkpoint")
    lines = head.split("\n")
    m = re.fullmatch(r"old (0|[1-9]\d*)", lines[0])
    if not m:
        raise ValueError("first line must be `old <size>`")
    if len(lines) - 1 > MAX_PROOF:
        raise ValueError("more than 63 proof lines")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as e:
            raise ValueError("bad proof line") from e
        if len(h) != HASH_SIZE:
            raise ValueError("proof hashes must be 32 bytes")
        proof.append(h)
    return int(m.group(1)), proof, note


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


def witness_app(witness: Witness) -> Starlette:
    """The witness over HTTP: POST /add-checkpoint and GET /<sha256(origin) hex>/checkpoint."""

    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("request too large\n", status_code=400)
        a = await run_in_threadpool(witness.add_checkpoint, body)
        # Set the header verbatim: Starlette would append a charset to text/x.tlog.size.
        return Response(a.body.encode(), status_code=a.status, headers={"Content-Type": a.content_type})

    async def checkpoint(request: Request) -> Response:
        wanted = request.path_params["origin_hash"]
        for origin in witness.logs:
            if origin_hash(origin) == wanted:
                latest = await run_in_threadpool(witness.latest, origin)
                if latest is not None:
                    return PlainTextResponse(latest[2], headers={"Cache-Control": "no-cache"})
        return PlainTextResponse("never cosigned a checkpoint for that log\n", status_code=404)

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{origin_hash:str}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )
