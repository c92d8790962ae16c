"""API keys: how they look, how they are stored, and who a key acts for.

A key is `cbk_<key id>_<secret>`. Only SHA-256 of the secret is stored: the secret has 256 bits of
entropy, so a slow password hash would add nothing but latency to every request (the reasoning of
GitHub's and Stripe's tokens). The key id finds the row in one indexed lookup; the secret is compared
in constant time, and an unknown key id is compared against a dummy hash so that a miss costs the
same as a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "cbk"
_KEY = re.compile(r"^cbk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
DUMMY_HASH = hashlib.sha256(b"citybase: no such key").hexdigest()


class Role(StrEnum):
    #: Acts for its department: writes its datasets, reads what its grants allow.
    MEMBER = "member"
    #: The platform operator: registers departments and keys, sees the platform's figures.
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, once its key is verified."""

    department: str
    role: Role
    key_id: str
    system: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def new_key() -> tuple[str, str, str]:
    """A fresh key: (key id, the whole key to hand out once, the hash to store).

    >>> key_id, key, stored = new_key()
    >>> split_key(key) == (key_id, key.split("_", 2)[2]) and len(stored) == 64
    True
    """
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}_{key_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    m = _KEY.match(key.strip())
    return (m.group(1), m.group(2)) if m else None


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Constant-time comparison; a missing row compares against a dummy so timing says nothing."""
    ok = hmac.compare_digest(hash_secret(secret), stored_hash or DUMMY_HASH)
    return ok and stored_hash is not None
