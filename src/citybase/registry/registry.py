"""The registry of departments, information systems and API keys, in the metadata database.

>>> from citybase.meta import open_meta
>>> reg = Registry(open_meta("sqlite://"))
>>> _ = reg.add_department("ps", "Public Security Bureau")
>>> issued = reg.issue_key("ps", label="ingest robot")
>>> reg.authenticate(issued.key).department
'ps'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from citybase.errors import Conflict, InputError, NotFound
from citybase.meta import METADATA, ensure
from citybase.registry.keys import Principal, Role, new_key, secret_matches, split_key

_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

departments = Table(
    "departments",
    METADATA,
    Column("id", String(63), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
)
systems = Table(
    "systems",
    METADATA,
    Column("id", String(63), primary_key=True),
    Column("department", String(63), ForeignKey("departments.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
)
api_keys = Table(
    "api_keys",
    METADATA,
    Column("key_id", String(16), primary_key=True),
    Column("department", String(63), ForeignKey("departments.id"), nullable=False, index=True),
    Column("system", String(63), ForeignKey("systems.id"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("label", String(255), nullable=False, default=""),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=True),
    Column("revoked_at", DateTime, nullable=True),
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _utc_naive(t: datetime | None) -> datetime | None:
    """Times are stored as naive UTC: an aware time is converted, a naive one is taken as UTC."""
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


def _check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise InputError(
            f"{kind} id {value!r} must be lowercase letters, digits, _ and - (starting with a letter, ≤63)"
        )
    return value


@dataclass(frozen=True)
class Department:
    id: str
    name: str


@dataclass(frozen=True)
class System:
    id: str
    department: str
    name: str


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: everything but its secret."""

    key_id: str
    department: str
    system: str | None
    role: Role
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        now = _now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued key. `key` is shown once and never stored."""

    info: KeyInfo
    key: str


class Registry:
    """Departments, systems and keys over one metadata engine (thread-safe: one connection per call)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        ensure(engine, departments, systems, api_keys)

    # -- departments and systems --------------------------------------------------------------

    def add_department(self, id: str, name: str | None = None) -> Department:
        """Register a department; registering it again with the same id is a no-op."""
        _check_id("department", id)
        with self.engine.begin() as c:
            row = c.execute(select(departments).where(departments.c.id == id)).first()
            if row is None:
                c.execute(insert(departments).values(id=id, name=name or id, created_at=_now()))
                return Department(id, name or id)
            return Department(row.id, row.name)

    def departments(self) -> list[Department]:
        with self.engine.connect() as c:
            rows = c.execute(select(departments).order_by(departments.c.id)).all()
        return [Department(r.id, r.name) for r in rows]

    def department(self, id: str) -> Department:
        with self.engine.connect() as c:
            r = c.execute(select(departments).where(departments.c.id == id)).first()
        if r is None:
            raise NotFound(f"no department {id!r}")
        return Department(r.id, r.name)

    def add_system(self, department: str, id: str, name: str | None = None) -> System:
        """Register an information system of a department; idempotent for the same department."""
        _check_id("system", id)
        self.department(department)
        with self.engine.begin() as c:
            row = c.execute(select(systems).where(systems.c.id == id)).first()
            if row is None:
                c.execute(
                    insert(systems).values(id=id, department=department, name=name or id, created_at=_now())
                )
                return System(id, department, name or id)
        if row.department != department:
            raise Conflict(f"system {id!r} belongs to another department")
        return System(row.id, row.department, row.name)

    def systems(self, department: str | None = None) -> list[System]:
        q = select(systems).order_by(systems.c.id)
        if department is not None:
            q = q.where(systems.c.department == department)
        with self.engine.connect() as c:
            return [System(r.id, r.department, r.name) for r in c.execute(q).all()]

    # -- keys ---------------------------------------------------------------------------------

    def issue_key(
        self,
        department: str,
        *,
        role: Role | str = Role.MEMBER,
        system: str | None = None,
        label: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        """Issue a key for a department (and optionally one of its systems)."""
        self.department(department)
        if system is not None and system not in {s.id for s in self.systems(department)}:
            raise NotFound(f"department {department!r} has no system {system!r}")
        key_id, key, stored = new_key()
        now = _now()
        values = dict(
            key_id=key_id,
            department=department,
            system=system,
            role=Role(role).value,
            label=label,
            secret_hash=stored,
            created_at=now,
            expires_at=_utc_naive(expires_at),
            revoked_at=None,
        )
        try:
            with self.engine.begin() as c:
                c.execute(insert(api_keys).values(**values))
        except IntegrityError as e:  # pragma: no cover - 64 random bits colliding
            raise Conflict("key id collision; issue again") from e
        return IssuedKey(self._info(values), key)

    def keys(self, department: str | None = None) -> list[KeyInfo]:
        q = select(api_keys).order_by(api_keys.c.created_at)
        if department is not None:
            q = q.where(api_keys.c.department == department)
        with self.engine.connect() as c:
            return [self._info(r._mapping) for r in c.execute(q).all()]

    def revoke_key(self, key_id: str) -> KeyInfo:
        """Revoke a key at once: the next request with it gets 401."""
        with self.engine.begin() as c:
            n = c.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            ).rowcount
            row = c.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise NotFound(f"no key {key_id!r}")
        if n == 0 and row.revoked_at is None:  # pragma: no cover
            raise Conflict(f"key {key_id!r} could not be revoked")
        return self._info(row._mapping)

    def rotate_key(self, key_id: str) -> IssuedKey:
        """Issue a new key with the same department, system, role and label; revoke the old one."""
        old = next((k for k in self.keys() if k.key_id == key_id), None)
        if old is None:
            raise NotFound(f"no key {key_id!r}")
        issued = self.issue_key(
            old.department, role=old.role, system=old.system, label=old.label, expires_at=old.expires_at
        )
        self.revoke_key(key_id)
        return issued

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal a presented key acts for, or None (wrong, revoked, expired or malformed)."""
        parts = split_key(key) if key else None
        key_id, secret = parts if parts else ("0" * 16, "x" * 43)
        with self.engine.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        ok = secret_matches(secret, row.secret_hash if row is not None else None)
        if not ok or parts is None or row is None:
            return None
        info = self._info(row._mapping)
        if not info.active:
            return None
        return Principal(department=info.department, role=info.role, key_id=info.key_id, system=info.system)

    @staticmethod
    def _info(r: object) -> KeyInfo:
        m = dict(r)  # type: ignore[call-overload]
        return KeyInfo(
            key_id=m["key_id"],
            department=m["department"],
            system=m["system"],
            role=Role(m["role"]),
            label=m["label"] or "",
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            revoked_at=m["revoked_at"],
        )
