"""A small sharing world for the share box's tests, and the share modules' doctests.

The health department provides three datasets with personal fields — one per sharing attribute —
of visits located in the demo city's two districts over three days. Other departments play the
roles of the security table (test_share_authz.py). The platform's clock is a `Clock` the tests
move, so that grants expire without waiting.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import citybase.share
from citybase.platform import CityBase
from citybase.query.demo import AIR, demo_city
from citybase.registry import Principal, Role
from citybase.share import CatalogMeta, Decision, Sharing
from citybase.share.catalog import AggregatePolicy, Grain

T0 = datetime(2024, 5, 1)
PROVIDER = "health"
#: Role -> department (None: no key at all).
DEPARTMENTS = {
    "provider": PROVIDER,
    "operator": "operator",
    "with_grant": "police",
    "without_grant": "transport",
    "expired": "education",
    "revoked": "civil",
    "other_tenant": "planning",
}
SHARINGS = ("unconditional", "conditional", "not_shared")
DATASETS = {"unconditional": "vaccinations", "conditional": "visits", "not_shared": "hiv_cases"}
K = 3


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def visit_spec(name: str, sharing: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": f"{name} records",
        "description": f"Health records of {name}, one row per visit.",
        "department": PROVIDER,
        "system": "his",
        "kind": "points",
        "time_field": "t",
        "key": ["visit_id"],
        "geometry": {"lon": "x", "lat": "y"},
        "sharing": sharing,
        "update_cycle": "daily",
        "fields": [
            {"name": "visit_id", "type": "string"},
            {"name": "patient", "type": "string", "personal": "name"},
            {"name": "id_number", "type": "string", "personal": "id_number"},
            {"name": "phone", "type": "string", "personal": "phone"},
            {"name": "t", "type": "timestamp"},
            {"name": "x", "type": "float"},
            {"name": "y", "type": "float"},
            {"name": "cost", "type": "float", "unit": "CNY"},
        ],
    }


SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨"


def people(n: int = 12) -> list[dict[str, str]]:
    return [
        {
            "patient": SURNAMES[i] + "小明",
            "id_number": f"11010119900307{i:04d}",
            "phone": f"1381234{i:04d}",
        }
        for i in range(n)
    ]


def visit_rows() -> list[dict[str, Any]]:
    """Day 0: district A has 6 people, B has 4. Day 1: A has 2 people (below k=3), B 5. Day 2: A 3."""
    ps = people()
    plan = {
        0: {"A": range(0, 6), "B": range(6, 10)},
        1: {"A": range(0, 2), "B": range(2, 7)},
        2: {"A": range(4, 7)},
    }
    xs = {"A": 116.30, "B": 116.40}
    rows = []
    for day, by in plan.items():
        for district, who in by.items():
            for j, i in enumerate(who):
                # Person 0 visits twice on day 0 (rows != contributors), with a large cost.
                for rep in range(2 if (i == 0 and day == 0) else 1):
                    rows.append(
                        {
                            "visit_id": f"v{day}{district}{i}{rep}",
                            **ps[i],
                            "t": T0 + timedelta(days=day, hours=8 + j, minutes=rep),
                            "x": xs[district] + 0.001 * j,
                            "y": 39.90 + 0.001 * i,
                            "cost": 100.0 + 10 * i + (1000.0 if i == 0 else 0.0),
                        }
                    )
    return rows


def raw_personal_values() -> set[str]:
    return {v for p in people() for v in p.values()}


@dataclass
class World:
    root: Path
    cb: CityBase
    share: Sharing
    clock: Clock
    keys: dict[str, str] = field(default_factory=dict)  # role -> API key
    grants: dict[tuple[str, str], str] = field(default_factory=dict)  # (role, dataset) -> request id
    facts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def who(self, role: str) -> Principal:
        dept = DEPARTMENTS[role]
        return Principal(dept, Role.ADMIN if role == "operator" else Role.MEMBER, key_id=f"k-{role}")

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role in self.keys else {}

    def close(self) -> None:
        self.share.close()
        self.cb.close()
        shutil.rmtree(self.root, ignore_errors=True)


def build_world() -> World:
    root = Path(tempfile.mkdtemp(prefix="citybase-share-"))
    cb = CityBase(root)
    clock = Clock(datetime(2024, 6, 1, 12, 0))
    w = World(root, cb, Sharing(cb, clock=clock), clock)
    w.share = Sharing(cb, lambda kind, payload: w.facts.append((kind, payload)), clock=clock)
    cb.setup_city(demo_city())
    for role, dept in DEPARTMENTS.items():
        cb.registry.add_department(dept, dept.title())
        w.keys[role] = cb.registry.issue_key(dept, role=Role.ADMIN if role == "operator" else Role.MEMBER).key
    cb.registry.add_department("ecology", "Ecology")
    cb.registry.add_system(PROVIDER, "his", "Hospital information system")
    cb.declare(AIR)
    cb.ingest("air", [{"station": "w", "t": T0, "x": 116.3, "y": 39.9, "pm25": 30.0}])
    rows = visit_rows()
    for sharing, name in DATASETS.items():
        cb.declare(visit_spec(name, sharing))
        cb.ingest(name, rows)
    cb.flush()
    policy = AggregatePolicy(k=K, contributor="id_number", grain=Grain(level="district", every="1d"))
    for name in DATASETS.values():
        w.share.describe(w.who("provider"), name, CatalogMeta(keywords=["health"], policy=policy))
    prov = w.who("provider")
    for sharing in ("unconditional", "conditional"):
        ds = DATASETS[sharing]
        for role, days in (("with_grant", 365), ("expired", 1), ("revoked", 365)):
            r = w.share.request(w.who(role), ds, purpose=f"{role} work", days=days)
            if r.state.value == "requested":
                r = w.share.decide(prov, r.id, Decision(action="approve"))
            w.grants[(role, ds)] = r.id
        w.share.revoke(prov, w.grants[("revoked", ds)], "no longer needed")
    # The other tenant holds a grant, on another provider's dataset.
    r = w.share.request(w.who("other_tenant"), "air", purpose="air work")
    w.share.decide(w.who("operator"), r.id, Decision(action="approve"))
    clock.now += timedelta(days=2)  # the education department's one-day grants are over
    return w


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


def test_share_doctests() -> None:
    """Every example in the share box's docstrings runs as written."""
    failed = tried = 0
    for m in pkgutil.iter_modules(citybase.share.__path__):
        mod = importlib.import_module(f"citybase.share.{m.name}")
        r = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        failed += r.failed
        tried += r.attempted
    assert failed == 0
    assert tried >= 15


def test_world_is_as_described(world: World) -> None:
    states = {k: world.share.grants.get(v).state.value for k, v in world.grants.items()}
    assert states[("with_grant", "visits")] == "approved"
    assert states[("revoked", "visits")] == "revoked"
    # Expiry is noticed when read.
    assert world.share.grants.active("education", "visits") is None
    assert world.share.grants.get(world.grants[("expired", "visits")]).state.value == "expired"
    assert world.cb.lake.stats()["visits"] == len(visit_rows())


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/sharing.md's Python blocks run, in order, as one script."""
    import re

    doc = Path(__file__).resolve().parents[1] / "docs" / "sharing.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(compile("\n".join(blocks), str(doc), "exec"), scope)
    assert scope["noisy"].epsilon == pytest.approx(0.5)


def test_every_route_is_documented() -> None:
    """Each share route appears in docs/sharing.md's HTTP table."""
    from citybase.api.routes.share import router

    doc = (Path(__file__).resolve().parents[1] / "docs" / "sharing.md").read_text(encoding="utf-8")
    for route in router.routes:
        path = getattr(route, "path", "")
        assert f"`{path}" in doc, f"{path} is not in docs/sharing.md"
