"""Threshold rules on telemetry: a reading that crosses a threshold raises an alarm, once per crossing.

A rule watches one field of one `series` dataset (optionally one device): `pm25 > 75`. An alarm is
raised when a device's reading goes from not matching to matching; it is not raised again until
the condition has cleared. `hysteresis` keeps a value that hovers at the threshold from raising an
alarm at every wobble (for `> 75` with hysteresis 5 the alarm clears only at or below 70);
`duration_s` asks that the condition hold that long before the alarm is raised.

Alarms are rows of the points dataset `iot_alarms` (declared on first use), keyed by
(rule, device, ts): a reading redelivered after a restart raises nothing new.

Rules are kept in the metadata database (`iot_rules`); in YAML::

    rules:
      - id: pm25-high
        dataset: air_readings
        field: pm25
        op: ">"
        value: 75
        hysteresis: 5
        severity: critical
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Column, Engine, String, Table, Text, delete, insert, select, update

from citybase.errors import DeclarationError, InputError, NotFound, invalid
from citybase.iot.decode import Rows
from citybase.meta import METADATA, ensure
from citybase.model.dataset import DatasetSpec, FieldType

ALARMS = "iot_alarms"

Op = Literal[">", ">=", "<", "<=", "=="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
}

rules_table = Table(
    "iot_rules",
    METADATA,
    Column("id", String(128), primary_key=True),
    Column("department", String(63), nullable=False, index=True),
    Column("spec", Text, nullable=False),
)


class Rule(BaseModel):
    """One threshold rule."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique rule id, e.g. `pm25-high`.")
    dataset: str
    field: str
    op: Op
    value: float
    hysteresis: float = Field(default=0.0, ge=0, description="How far back the value must go to clear.")
    duration_s: float = Field(default=0.0, ge=0, description="How long the condition must hold first.")
    severity: Literal["info", "warning", "critical"] = "warning"
    device: str | None = Field(default=None, description="Only this device; default every device.")
    department: str | None = Field(default=None, description="Owner; set to the dataset's department.")
    description: str = ""

    @field_validator("id")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$", v):
            raise ValueError(f"rule id {v!r} must be letters, digits, '_', '.', ':' or '-'")
        return v

    def matches(self, v: float) -> bool:
        return _OPS[self.op](v, self.value)

    def clears(self, v: float) -> bool:
        """True when an active alarm's condition is over (past the hysteresis band)."""
        h = self.hysteresis
        if self.op in (">", ">="):
            return not _OPS[self.op](v, self.value - h)
        if self.op in ("<", "<="):
            return not _OPS[self.op](v, self.value + h)
        return v != self.value


def check_rule(rule: Rule, spec: DatasetSpec | None) -> Rule:
    """The rule, owned by its dataset's department, if its field is a number of that dataset."""
    if spec is None:
        raise NotFound(f"rule {rule.id!r}: no dataset {rule.dataset!r}")
    if rule.field not in {f.name for f in spec.fields} or spec.field(rule.field).type not in (
        FieldType.float,
        FieldType.int,
    ):
        raise InputError(f"rule {rule.id!r}: {rule.field!r} is not a numeric field of {spec.name!r}")
    return rule.model_copy(update={"department": spec.department})


class RuleBook:
    """Rules in the metadata database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        ensure(engine, rules_table)

    def add(self, rule: Rule) -> Rule:
        """Add or replace a rule (by id)."""
        body, dept = rule.model_dump_json(), rule.department or ""
        with self.engine.begin() as c:
            if c.execute(select(rules_table.c.id).where(rules_table.c.id == rule.id)).first() is None:
                c.execute(insert(rules_table).values(id=rule.id, department=dept, spec=body))
            else:
                c.execute(
                    update(rules_table).where(rules_table.c.id == rule.id).values(department=dept, spec=body)
                )
        return rule

    def find(self, rule_id: str) -> Rule | None:
        with self.engine.connect() as c:
            row = c.execute(select(rules_table.c.spec).where(rules_table.c.id == rule_id)).first()
        return None if row is None else Rule.model_validate_json(row.spec)

    def get(self, rule_id: str) -> Rule:
        r = self.find(rule_id)
        if r is None:
            raise NotFound(f"no rule {rule_id!r}")
        return r

    def list(self, department: str | None = None) -> list[Rule]:
        q = select(rules_table.c.spec).order_by(rules_table.c.id)
        if department is not None:
            q = q.where(rules_table.c.department == department)
        with self.engine.connect() as c:
            return [Rule.model_validate_json(r.spec) for r in c.execute(q).all()]

    def remove(self, rule_id: str) -> None:
        with self.engine.begin() as c:
            if not c.execute(delete(rules_table).where(rules_table.c.id == rule_id)).rowcount:
                raise NotFound(f"no rule {rule_id!r}")


def read_rules(path: str | Path) -> list[Rule]:
    """Rules from YAML/JSON: `{rules: [...]}` or a bare list; errors name the file and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data: Any = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DeclarationError(f"{p}: cannot read rules: {e}") from e
    items = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DeclarationError(f"{p}: expected a list of rules (or `rules: [...]`)")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Rule.model_validate(item))
        except ValidationError as e:
            raise invalid(str(p), f"rule #{i + 1}", e) from e
    return out


def alarms_dataset() -> DatasetSpec:
    """The points dataset alarms land in."""
    f = [
        ("rule", "string"),
        ("device", "string"),
        ("department", "string"),
        ("dataset", "string"),
        ("field", "string"),
        ("op", "string"),
        ("threshold", "float"),
        ("value", "float"),
        ("severity", "string"),
        ("ts", "timestamp"),
        ("lon", "float"),
        ("lat", "float"),
    ]
    return DatasetSpec.from_dict(
        {
            "name": ALARMS,
            "title": "Alarms raised by threshold rules on device telemetry",
            "department": "iot",
            "system": "rules",
            "kind": "points",
            "fields": [{"name": n, "type": t} for n, t in f],
            "time_field": "ts",
            "geometry": {"lon": "lon", "lat": "lat"},
            "key": ["rule", "device", "ts"],
        }
    )


@dataclass
class _State:
    active: bool = False
    since: int | None = None  # when the condition started to hold (us), for duration_s
    last: int = -(2**62)  # the newest reading seen (us): older or equal ones are redeliveries


class RuleEngine:
    """Evaluates rules on each batch; keeps per (rule, device) state between batches.

    `evaluate` does not change the state: `commit` does, once the alarms are durable, so that a
    batch that fails to be stored is evaluated again from the same state when it is retried.
    """

    def __init__(self, rules: Iterable[Rule] = ()):
        self.rules: list[Rule] = list(rules)
        self.state: dict[tuple[str, str], _State] = {}

    def set_rules(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        ids = {r.id for r in self.rules}
        self.state = {k: s for k, s in self.state.items() if k[0] in ids}

    def seed(self, latest: dict[str, tuple[int, dict[str, Any]]]) -> None:
        """Start from each device's latest stored reading (device -> (ts us, values)), so that a
        restart does not raise again an alarm whose condition was already true."""
        for rule in self.rules:
            for device, (ts, values) in latest.items():
                v = values.get(rule.field)
                if (rule.device is None or rule.device == device) and isinstance(v, int | float):
                    self.state[(rule.id, device)] = _State(active=rule.matches(v), since=None, last=ts)

    def evaluate(
        self, batches: dict[str, Rows]
    ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], _State]]:
        """(alarm rows, the states to commit) for one batch of rows per dataset."""
        alarms: list[dict[str, Any]] = []
        changed: dict[tuple[str, str], _State] = {}
        for rule in self.rules:
            rows = batches.get(rule.dataset)
            if rows is None or rule.field not in rows.values:
                continue
            vals = rows.values[rule.field]
            order = sorted(range(len(rows)), key=lambda i: rows.ts[i])
            for i in order:
                dev, v = rows.device[i], vals[i]
                if v is None or (rule.device is not None and dev != rule.device):
                    continue
                key = (rule.id, dev)
                st = changed.get(key) or self.state.get(key) or _State()
                ts = rows.ts[i]
                if ts <= st.last:
                    continue
                st = _State(st.active, st.since, ts)
                if st.active:
                    if rule.clears(v):
                        st.active, st.since = False, None
                elif rule.matches(v):
                    st.since = ts if st.since is None else st.since
                    if ts - st.since >= rule.duration_s * 1_000_000:
                        st.active = True
                        alarms.append(_alarm(rule, rows, i, v))
                else:
                    st.since = None
                changed[key] = st
        return alarms, changed

    def commit(self, changed: dict[tuple[str, str], _State]) -> None:
        self.state.update(changed)


def _alarm(rule: Rule, rows: Rows, i: int, v: float) -> dict[str, Any]:
    return {
        "rule": rule.id,
        "device": rows.device[i],
        "department": rule.department or rows.spec.department,
        "dataset": rule.dataset,
        "field": rule.field,
        "op": rule.op,
        "threshold": rule.value,
        "value": float(v),
        "severity": rule.severity,
        "ts": rows.ts[i],
        "lon": rows.lon[i],
        "lat": rows.lat[i],
    }


def alarms_table(alarms: list[dict[str, Any]]) -> pa.Table:
    """Alarm rows (ts in Unix microseconds) as Arrow, for `cb.ingest` into `iot_alarms`."""
    t = pa.Table.from_pylist(alarms)
    i = t.column_names.index("ts")
    return t.set_column(i, "ts", t.column("ts").cast(pa.int64()).cast(pa.timestamp("us", "UTC")))
