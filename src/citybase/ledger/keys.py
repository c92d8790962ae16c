"""Signing keys kept next to the data they sign: created on first use, private files mode 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from citybase.errors import Conflict
from citybase.ledger.note import ED25519, Signer, Verifier


def load_or_create(path: Path, name: str, sig_type: int = ED25519) -> Signer:
    """The signer stored at `path` (a PRIVATE+KEY+... line), generated there on first use.

    A key file readable by group or others is refused, as ssh does: a leaked log key lets anyone
    sign a forked history.
    """
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise Conflict(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        signer = Signer.from_skey(path.read_text(encoding="ascii"))
        if signer.name != name or signer.sig_type != sig_type:
            raise Conflict(f"{path} holds a key for {signer.name!r}, not {name!r}")
        return signer
    signer = Signer.generate(name, sig_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(signer.skey + "\n")
        f.flush()
        os.fsync(f.fileno())
    path.with_suffix(".vkey").write_text(signer.verifier.vkey + "\n", encoding="ascii")
    return signer


def read_vkey(spec: str | Path) -> Verifier:
    """A verifier key from a file, or the vkey itself where `spec` names no file.

    The text is parsed as given, not as a path: a vkey's base64 may end in "/" or hold "//",
    which a path drops (1 key in 64 or so failed to verify from the command line).
    """
    path = Path(spec)
    text = path.read_text(encoding="ascii") if path.is_file() else str(spec)
    return Verifier.from_vkey(text.strip())
