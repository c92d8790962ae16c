"""Departments, their information systems, and API keys."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from citybase.api.auth import Admin, Caller
from citybase.errors import Forbidden, NotFound
from citybase.registry import Principal, Registry, Role
from citybase.registry.registry import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["registry"])


class DepartmentIn(BaseModel):
    id: str = Field(description="Short id, e.g. `ps` (lowercase letters, digits, _).")
    name: str


class DepartmentOut(BaseModel):
    id: str
    name: str


class SystemIn(BaseModel):
    id: str
    name: str


class SystemOut(BaseModel):
    id: str
    department: str
    name: str


class KeyIn(BaseModel):
    department: str
    role: Role = Role.MEMBER
    system: str | None = None
    label: str = ""
    expires_at: datetime | None = None


class KeyOut(BaseModel):
    key_id: str
    department: str
    system: str | None
    role: Role
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool

    @classmethod
    def of(cls, k: KeyInfo) -> KeyOut:
        return cls(**{f: getattr(k, f) for f in cls.model_fields})


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key itself. Shown once: store it now.")


def _registry(request: Request) -> Registry:
    reg: Registry = request.app.state.cb.registry
    return reg


def _own_key(reg: Registry, who: Principal, key_id: str) -> KeyInfo:
    """The key, if the caller may manage it; another tenant's key looks like no key at all."""
    k = next((k for k in reg.keys(None if who.is_admin else who.department) if k.key_id == key_id), None)
    if k is None:
        raise NotFound(f"no key {key_id!r}")
    if k.role is Role.ADMIN and not who.is_admin:
        raise Forbidden("an operator's key is managed with an operator's key")
    return k


@router.get("/departments", response_model=list[DepartmentOut])
def list_departments(request: Request, _: Caller) -> list[DepartmentOut]:
    return [DepartmentOut(id=d.id, name=d.name) for d in _registry(request).departments()]


@router.post("/departments", response_model=DepartmentOut, status_code=201)
def add_department(request: Request, body: DepartmentIn, _: Admin) -> DepartmentOut:
    d = _registry(request).add_department(body.id, body.name)
    return DepartmentOut(id=d.id, name=d.name)


@router.get("/departments/{department}/systems", response_model=list[SystemOut])
def list_systems(request: Request, department: str, _: Caller) -> list[SystemOut]:
    reg = _registry(request)
    reg.department(department)
    return [SystemOut(id=s.id, department=s.department, name=s.name) for s in reg.systems(department)]


@router.post("/departments/{department}/systems", response_model=SystemOut, status_code=201)
def add_system(request: Request, department: str, body: SystemIn, _: Admin) -> SystemOut:
    s = _registry(request).add_system(department, body.id, body.name)
    return SystemOut(id=s.id, department=s.department, name=s.name)


@router.get("/keys", response_model=list[KeyOut], summary="Keys (the operator: all; else your department's)")
def list_keys(request: Request, who: Caller) -> list[KeyOut]:
    reg = _registry(request)
    return [KeyOut.of(k) for k in reg.keys(None if who.is_admin else who.department)]


@router.post("/keys", response_model=IssuedKeyOut, status_code=201)
def issue_key(request: Request, body: KeyIn, _: Admin) -> IssuedKeyOut:
    issued = _registry(request).issue_key(
        body.department, role=body.role, system=body.system, label=body.label, expires_at=body.expires_at
    )
    return IssuedKeyOut(**KeyOut.of(issued.info).model_dump(), key=issued.key)


@router.post("/keys/{key_id}/rotate", response_model=IssuedKeyOut, status_code=201)
def rotate_key(request: Request, key_id: str, who: Caller) -> IssuedKeyOut:
    reg = _registry(request)
    _own_key(reg, who, key_id)
    issued = reg.rotate_key(key_id)
    return IssuedKeyOut(**KeyOut.of(issued.info).model_dump(), key=issued.key)


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(request: Request, key_id: str, who: Caller) -> KeyOut:
    reg = _registry(request)
    _own_key(reg, who, key_id)
    return KeyOut.of(reg.revoke_key(key_id))
