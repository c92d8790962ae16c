"""C2SP signed-note: Ed25519 signers and verifiers, verifier keys, signing and opening notes.

Two signature types are supported, both Ed25519 from `cryptography`: 0x01 (plain note signatures, the
log's key) and 0x04 (timestamped checkpoint cosignatures, C2SP tlog-cosignature, the witnesses' keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from citybase.errors import CitybaseError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
EM_DASH = "\u2014"
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16


class NoteError(CitybaseError, ValueError):
    """A note is malformed or its signatures do not verify against the keys trusted for it."""

    status = 403
    code = "bad_signature"


def key_id(name: str, sig_type: int, public: bytes) -> int:
    """SHA-256(name || 0x0A || type || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The tlog-cosignature/v1 message: header line, time line, then the checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class Verifier:
    """A trusted public key: name, key id, signature type. Parse one from a vkey string."""

    name: str
    key_id: int
    sig_type: int
    public: Ed25519PublicKey

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse `name+hex(keyid)+base64(type||pubkey)`; the key id must match the key."""
        try:
            name, hexid, b64 = vkey.strip().split("+", 2)
            kid = int(hexid, 16)
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as e:
            raise NoteError(f"malformed verifier key {vkey!r}") from e
        _check_name(name)
        if len(hexid) != 8 or len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"unsupported verifier key {vkey!r}")
        if key_id(name, raw[0], raw[1:]) != kid:
            raise NoteError(f"verifier key {vkey!r}: key id does not match the key")
        return cls(name, kid, raw[0], Ed25519PublicKey.from_public_bytes(raw[1:]))

    @property
    def vkey(self) -> str:
        raw = bytes([self.sig_type]) + _raw_public(self.public)
        return f"{self.name}+{self.key_id:08x}+{base64.b64encode(raw).decode()}"

    def verify(self, text: str, sig: bytes) -> int | None:
        """Check a signature (without the key id prefix) over the note text. Returns the cosignature
        timestamp (0 for plain signatures), or None if it does not verify."""
        try:
            if self.sig_type == ED25519:
                self.public.verify(sig, text.encode())
                return 0
            if len(sig) != 72:
                return None
            ts = int.from_bytes(sig[:8], "big")
            if ts >= 1 << 63:
                return None
            self.public.verify(sig[8:], cosigned_message(text, ts))
            return ts
        except InvalidSignature:
            return None


@dataclass(frozen=True)
class Signer:
    """A private key with its note name; `sig_type` 0x04 makes it a witness (cosigner) key."""

    name: str
    sig_type: int
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> Signer:
        _check_name(name)
        return cls(name, sig_type, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse `PRIVATE+KEY+name+hex(keyid)+base64(type||seed)` (the Go sumdb/note format)."""
        try:
            p1, p2, name, hexid, b64 = skey.strip().split("+", 4)
            raw = base64.b64decode(b64, validate=True)
            kid = int(hexid, 16)
        except (ValueError, binascii.Error) as e:
            raise NoteError("malformed signer key") from e
        if (p1, p2) != ("PRIVATE", "KEY") or len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("malformed signer key")
        s = cls(name, raw[0], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if s.key_id != kid:
            raise NoteError("signer key: key id does not match the key")
        return s

    @property
    def skey(self) -> str:
        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = base64.b64encode(bytes([self.sig_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{raw}"

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.sig_type, _raw_public(self.private.public_key()))

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.sig_type, self.private.public_key())

    def sign(self, text: str, timestamp: int | None = None) -> bytes:
        """Key id || signature (|| preceded by the timestamp for cosignatures)."""
        prefix = struct.pack(">I", self.key_id)
        if self.sig_type == ED25519:
            return prefix + self.private.sign(text.encode())
        ts = int(time.time()) if timestamp is None else timestamp
        return prefix + struct.pack(">Q", ts) + self.private.sign(cosigned_message(text, ts))

    def signature_line(self, text: str, timestamp: int | None = None) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.sign(text, timestamp)).decode()}\n"

    def __repr__(self) -> str:  # never print key material
        return f"Signer({self.name!r}, {self.key_id:08x})"


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id and the signature bytes after the id."""

    name: str
    key_id: int
    sig: bytes

    @property
    def line(self) -> str:
        blob = struct.pack(">I", self.key_id) + self.sig
        return f"{EM_DASH} {self.name} {base64.b64encode(blob).decode()}\n"


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def split_note(note: str) -> tuple[str, list[Signature]]:
    """Split a signed note into its text (with the final newline) and its signature lines."""
    if _CONTROL.search(note):
        raise NoteError("note contains control characters")
    if not note.endswith("\n"):
        raise NoteError("note does not end in a newline")
    i = note.rfind("\n\n")
    if i < 0:
        raise NoteError("note has no signatures")
    text, sig_block = note[: i + 1], note[i + 2 :]
    sigs: list[Signature] = []
    for line in sig_block.splitlines():
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, b64 = line[len(prefix) :].partition(" ")
        _check_name(name)
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise NoteError(f"malformed signature line {line!r}") from e
        if len(blob) < 5:
            raise NoteError(f"malformed signature line {line!r}")
        sigs.append(Signature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    if not sigs:
        raise NoteError("note has no signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    return text, sigs


def sign_note(text: str, signers: list[Signer], timestamp: int | None = None) -> str:
    """A signed note: text, blank line, one signature line per signer."""
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    return text + "\n" + "".join(s.signature_line(text, timestamp) for s in signers)


@dataclass(frozen=True)
class Opened:
    """A note whose signatures were checked: its text, the verifiers that signed it, and the lines."""

    text: str
    signed_by: dict[str, int]  # vkey -> timestamp (0 for plain signatures)
    signatures: list[Signature]


def open_note(note: str, verifiers: list[Verifier]) -> Opened:
    """Verify a note per signed-note: unknown signatures are ignored, a known key whose signature fails
    rejects the note, and at least one known key must have signed."""
    text, sigs = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    signed: dict[str, int] = {}
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue
        ts = v.verify(text, s.sig)
        if ts is None:
            raise NoteError(f"signature by {s.name} ({s.key_id:08x}) does not verify")
        signed[v.vkey] = ts
    if not signed:
        raise NoteError("note is not signed by any trusted key")
    return Opened(text, signed, sigs)
