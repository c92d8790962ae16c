"""The device registry: which devices exist, whose they are, where they stand and what they send.

A device is a fixed sensor of one department. Its telemetry goes to one `series` dataset of that
department; its payload schema maps the keys of its JSON payload to that dataset's fields, with an
optional scale (a device that sends tenths of a degree says `scale: 0.1`). Its location is fixed, so
its readings carry its place keys without the device sending coordinates.

Devices live in the metadata database (table `iot_devices`), beside the registry of departments.

>>> from citybase.meta import open_meta
>>> reg = DeviceRegistry(open_meta("sqlite://"))
>>> reg.add(Device(id="aq-1", type="air", department="eco", dataset="air", lon=116.4, lat=39.9,
...     payload={"pm25": "pm25"})).payload["pm25"].field
'pm25'
>>> [d.id for d in reg.list("eco")]
['aq-1']
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Column, Engine, String, Table, Text, delete, insert, select, update

from citybase.errors import Conflict, DeclarationError, InputError, NotFound, invalid
from citybase.meta import METADATA, ensure
from citybase.model.dataset import DatasetSpec, FieldType, Kind

#: Device ids appear in MQTT topics: no `/`, `+`, `#` or spaces.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")

devices_table = Table(
    "iot_devices",
    METADATA,
    Column("id", String(128), primary_key=True),
    Column("department", String(63), nullable=False, index=True),
    Column("spec", Text, nullable=False),
)


class PayloadField(BaseModel):
    """Where one payload key goes: a dataset field, times `scale`."""

    model_config = ConfigDict(extra="forbid")

    field: str
    scale: float = 1.0


class Device(BaseModel):
    """A registered device (pydantic: the same model validates YAML, the HTTP body and Python)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique device id; the `<device_id>` of its MQTT topic.")
    type: str = Field(description="Device type, e.g. `air_quality`, `traffic_loop`.")
    department: str = Field(description="Owning department; the `<department>` of its topic.")
    dataset: str = Field(description="The `series` dataset its readings go to.")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    payload: dict[str, PayloadField] = Field(
        min_length=1, description="Payload key -> dataset field (a string, or {field, scale})."
    )
    description: str = ""

    @field_validator("id")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        if not _DEVICE_ID.match(v):
            raise ValueError(f"device id {v!r} must be letters, digits, '_', '.', ':' or '-' (≤128)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _short_payload(cls, data: Any) -> Any:
        # `pm25: pm25` is the common case; accept it as shorthand for `{field: pm25}`.
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            data = dict(data)
            data["payload"] = {
                k: {"field": v} if isinstance(v, str) else v for k, v in data["payload"].items()
            }
        return data


def check_device(device: Device, spec: DatasetSpec | None) -> None:
    """Refuse a device whose dataset cannot take its readings (said at registration, not per message)."""
    if spec is None:
        raise NotFound(f"device {device.id!r}: no dataset {device.dataset!r}; declare it first")
    if spec.kind is not Kind.series:
        raise InputError(f"device {device.id!r}: dataset {spec.name!r} is {spec.kind.value}, not series")
    if spec.department != device.department:
        raise InputError(
            f"device {device.id!r} of {device.department!r} cannot feed dataset {spec.name!r} "
            f"of {spec.department!r}"
        )
    own = {spec.object_field, spec.time_field}
    if spec.geometry is not None:
        own |= {spec.geometry.lon, spec.geometry.lat}
    names = {f.name for f in spec.fields}
    for key, pf in device.payload.items():
        if pf.field not in names or pf.field in own:
            raise InputError(
                f"device {device.id!r}: payload key {key!r} maps to {pf.field!r}, "
                f"which is not a measure of dataset {spec.name!r}"
            )
        if pf.scale != 1.0 and spec.field(pf.field).type not in (FieldType.float, FieldType.int):
            raise InputError(f"device {device.id!r}: {key!r} has a scale but {pf.field!r} is not numeric")


class DeviceRegistry:
    """Devices in the metadata database (thread-safe: one connection per call)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        ensure(engine, devices_table)

    def add(self, device: Device, *, replace: bool = True) -> Device:
        """Register a device, or update it (same id); `replace=False` refuses an existing id."""
        body = device.model_dump_json()
        with self.engine.begin() as c:
            old = c.execute(select(devices_table.c.id).where(devices_table.c.id == device.id)).first()
            if old is None:
                c.execute(insert(devices_table).values(id=device.id, department=device.department, spec=body))
            elif replace:
                c.execute(
                    update(devices_table)
                    .where(devices_table.c.id == device.id)
                    .values(department=device.department, spec=body)
                )
            else:
                raise Conflict(f"device {device.id!r} is already registered")
        return device

    def find(self, device_id: str) -> Device | None:
        with self.engine.connect() as c:
            row = c.execute(select(devices_table.c.spec).where(devices_table.c.id == device_id)).first()
        return None if row is None else Device.model_validate_json(row.spec)

    def get(self, device_id: str) -> Device:
        d = self.find(device_id)
        if d is None:
            raise NotFound(f"no device {device_id!r}")
        return d

    def list(self, department: str | None = None) -> list[Device]:
        q = select(devices_table.c.spec).order_by(devices_table.c.id)
        if department is not None:
            q = q.where(devices_table.c.department == department)
        with self.engine.connect() as c:
            return [Device.model_validate_json(r.spec) for r in c.execute(q).all()]

    def remove(self, device_id: str) -> None:
        with self.engine.begin() as c:
            n = c.execute(delete(devices_table).where(devices_table.c.id == device_id)).rowcount
        if not n:
            raise NotFound(f"no device {device_id!r}")


def read_devices(path: str | Path) -> list[Device]:
    """Devices from a YAML/JSON file: `{devices: [...]}` or a bare list; errors name file and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data: Any = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DeclarationError(f"{p}: cannot read devices: {e}") from e
    items = data.get("devices") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DeclarationError(f"{p}: expected a list of devices (or `devices: [...]`)")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Device.model_validate(item))
        except ValidationError as e:
            raise invalid(str(p), f"device #{i + 1}", e) from e
    return out


def telemetry_dataset(
    name: str, department: str, system: str, measures: dict[str, str], *, partition: str = "month"
) -> DatasetSpec:
    """A `series` dataset shaped for devices: `device`, `ts`, the device's `lon`/`lat`, measures.

    Its key (device, ts) makes a redelivered reading a duplicate, stored once.

    >>> telemetry_dataset("air", "eco", "aq", {"pm25": "float"}).key
    ['device', 'ts']
    """
    fields: list[dict[str, Any]] = [
        {"name": "device", "type": "string", "required": True},
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "lon", "type": "float"},
        {"name": "lat", "type": "float"},
    ]
    fields += [{"name": k, "type": t} for k, t in measures.items()]
    return DatasetSpec.from_dict(
        {
            "name": name,
            "department": department,
            "system": system,
            "kind": "series",
            "fields": fields,
            "time_field": "ts",
            "object_field": "device",
            "geometry": {"lon": "lon", "lat": "lat"},
            "key": ["device", "ts"],
            "partition": partition,
        }
    )
