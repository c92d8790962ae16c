"""IoT: the device registry, the devices' latest state, and threshold rules.

A department manages its own devices and rules and sees its own devices' state; the operator any.
Another department's device or rule answers 403, as another department's dataset does.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from citybase.api.auth import Caller
from citybase.errors import Forbidden
from citybase.iot.devices import Device, DeviceRegistry, check_device
from citybase.iot.rules import Rule, RuleBook, check_rule
from citybase.iot.state import latest_state
from citybase.registry import Principal

router = APIRouter(prefix="/api/v1/iot", tags=["iot"])


class DeviceState(BaseModel):
    device: str
    type: str
    department: str
    dataset: str
    ts: datetime | None = Field(description="Time of the latest reading (UTC); null before the first.")
    values: dict[str, Any] | None = Field(description="The latest reading's fields.")
    lon: float
    lat: float
    district: str | None
    street: str | None
    community: str | None
    grid: str | None
    building: str | None
    h3: str | None = Field(description="H3 cell of the device, as hex.")


def _devices(request: Request) -> DeviceRegistry:
    return DeviceRegistry(request.app.state.cb.meta)


def _rules(request: Request) -> RuleBook:
    return RuleBook(request.app.state.cb.meta)


def _scope(who: Principal, department: str | None) -> str | None:
    """The department a listing covers: the caller's own, or for the operator the one asked (or all)."""
    if who.is_admin:
        return department
    if department is not None and department != who.department:
        raise Forbidden(f"department {who.department!r} cannot see the devices of {department!r}")
    return who.department


def _owns(who: Principal, department: str | None, what: str) -> None:
    if not who.is_admin and department != who.department:
        raise Forbidden(f"{what} belongs to another department")


# -- devices ----------------------------------------------------------------------------------


@router.get("/devices", response_model=list[Device], summary="Devices (yours; the operator: all)")
def list_devices(request: Request, who: Caller, department: str | None = None) -> list[Device]:
    return _devices(request).list(_scope(who, department))


@router.post("/devices", response_model=Device, status_code=201, summary="Register or update a device")
def add_device(request: Request, body: Device, who: Caller) -> Device:
    _owns(who, body.department, f"device {body.id!r}")
    reg = _devices(request)
    existing = reg.find(body.id)
    if existing is not None:
        _owns(who, existing.department, f"device {body.id!r}")
    check_device(body, request.app.state.cb.datasets.get(body.dataset))
    return reg.add(body)


@router.get("/devices/{device_id}", response_model=Device)
def get_device(request: Request, device_id: str, who: Caller) -> Device:
    d = _devices(request).get(device_id)
    _owns(who, d.department, f"device {device_id!r}")
    return d


@router.delete("/devices/{device_id}", status_code=204, response_class=Response)
def remove_device(request: Request, device_id: str, who: Caller) -> Response:
    reg = _devices(request)
    _owns(who, reg.get(device_id).department, f"device {device_id!r}")
    reg.remove(device_id)
    return Response(status_code=204)


# -- state ------------------------------------------------------------------------------------


@router.get("/state", response_model=list[DeviceState], summary="Latest reading of each device, on its place")
def get_state(request: Request, who: Caller, department: str | None = None) -> list[DeviceState]:
    t = latest_state(request.app.state.cb, _scope(who, department))
    out = []
    for r in t.to_pylist():
        r["values"] = json.loads(r["values"]) if r["values"] is not None else None
        r["h3"] = format(r["h3"], "x") if r["h3"] is not None else None
        out.append(DeviceState.model_validate(r))
    return out


# -- rules ------------------------------------------------------------------------------------


@router.get("/rules", response_model=list[Rule], summary="Threshold rules (yours; the operator: all)")
def list_rules(request: Request, who: Caller, department: str | None = None) -> list[Rule]:
    return _rules(request).list(_scope(who, department))


@router.post("/rules", response_model=Rule, status_code=201, summary="Add or replace a threshold rule")
def add_rule(request: Request, body: Rule, who: Caller) -> Rule:
    rule = check_rule(body, request.app.state.cb.datasets.get(body.dataset))
    _owns(who, rule.department, f"dataset {rule.dataset!r}")
    book = _rules(request)
    existing = book.find(rule.id)
    if existing is not None:
        _owns(who, existing.department, f"rule {rule.id!r}")
    return book.add(rule)


@router.get("/rules/{rule_id}", response_model=Rule)
def get_rule(request: Request, rule_id: str, who: Caller) -> Rule:
    r = _rules(request).get(rule_id)
    _owns(who, r.department, f"rule {rule_id!r}")
    return r


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response)
def remove_rule(request: Request, rule_id: str, who: Caller) -> Response:
    book = _rules(request)
    _owns(who, book.get(rule_id).department, f"rule {rule_id!r}")
    book.remove(rule_id)
    return Response(status_code=204)
