"""C2SP tlog-checkpoint: the signed tree head (origin, size, root hash) as a signed note."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from citybase.ledger.merkle import HASH_SIZE
from citybase.ledger.note import NoteError, Opened, Signer, Verifier, open_note, sign_note, split_note


@dataclass(frozen=True)
class Checkpoint:
    """A tree head. `format()` gives the note text (body) that signatures cover.

    >>> cp = Checkpoint("citybase.example/demo", 2, bytes(32))
    >>> Checkpoint.parse(cp.format()) == cp
    True
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def format(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (or a whole signed note: signatures are ignored here)."""
        if "\n\n" in text:
            text, _ = split_note(text)
        if not text.endswith("\n"):
            raise NoteError("checkpoint must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise NoteError("checkpoint needs origin, size and root lines, none empty")
        origin, size, root = lines[:3]
        if not re.fullmatch(r"0|[1-9]\d*", size):
            raise NoteError(f"bad checkpoint tree size {size!r}")
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error as e:
            raise NoteError("bad checkpoint root hash") from e
        if len(raw) != HASH_SIZE:
            raise NoteError("checkpoint root hash must be 32 bytes")
        return cls(origin, int(size), raw, tuple(lines[3:]))

    def sign(self, signer: Signer) -> str:
        return sign_note(self.format(), [signer])


@dataclass(frozen=True)
class Verified:
    """A checkpoint whose log signature (and the given witnesses' cosignatures) verified."""

    checkpoint: Checkpoint
    cosigned_by: dict[str, int]  # witness vkey -> cosignature timestamp
    note: Opened


def open_checkpoint(
    note: str, log_key: Verifier, witness_keys: list[Verifier] | None = None, quorum: int = 0
) -> Verified:
    """Verify a signed checkpoint: the log key must sign it (origin == key name), and at least
    `quorum` of the witness keys must have cosigned it. Raises NoteError otherwise."""
    witnesses = list(witness_keys or [])
    opened = open_note(note, [log_key, *witnesses])
    if log_key.vkey not in opened.signed_by:
        raise NoteError(f"checkpoint is not signed by the log key {log_key.name}")
    cp = Checkpoint.parse(opened.text)
    if cp.origin != log_key.name:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the log key's name {log_key.name!r}")
    cosigned = {k: t for k, t in opened.signed_by.items() if k != log_key.vkey}
    if len(cosigned) < quorum:
        raise NoteError(f"checkpoint has {len(cosigned)} witness cosignatures, {quorum} required")
    return Verified(cp, cosigned, opened)
