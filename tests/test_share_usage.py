"""Usage metering against the queries made, batching and the ledger hook, the platform figures,
and the access/usage/stats CLI."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from citybase.api.app import create_app
from citybase.share import AggregateQuery, Sharing
from citybase.share.usage import Usage, usage_table
from test_share_catalog import cli
from test_share_world import DATASETS, World, build_world, visit_rows


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


def test_metering_sums_match_the_queries_made(world: World) -> None:
    s = world.share
    s.usage.flush()
    base = {
        (r.consumer, r.dataset, r.kind): (r.uses, r.rows)
        for r in s.usage.summary(["consumer", "dataset", "kind"])
    }
    rng = random.Random(3)
    made: Counter[tuple[str, str, str]] = Counter()
    rows: Counter[tuple[str, str, str]] = Counter()
    for _ in range(60):
        role = rng.choice(["provider", "with_grant", "operator"])
        ds = rng.choice([DATASETS["conditional"], DATASETS["unconditional"]])
        kind = rng.choice(["bbox", "counts", "h3_bins", "aggregate"])
        who = world.who(role)
        if kind == "bbox":
            box = (116.2, 39.8, rng.choice([116.35, 116.5]), 40.0)
            n = s.read(who, ds, "bbox", bbox=box).num_rows
        elif kind == "counts":
            n = s.read(who, ds, "counts", level="district").num_rows
        elif kind == "h3_bins":
            n = s.read(who, ds, "h3_bins", resolution=rng.choice([5, 9])).num_rows
        else:
            q = AggregateQuery(start=datetime(2024, 5, 1), end=datetime(2024, 5, 4))
            n = s.aggregate(who, ds, q, purpose="study").table.num_rows
            kind = "aggregate:exact"
        made[(who.department, ds, kind)] += 1
        rows[(who.department, ds, kind)] += n
    got = {
        (r.consumer, r.dataset, r.kind): (r.uses, r.rows)
        for r in s.usage.summary(["consumer", "dataset", "kind"])
    }
    for key, n in made.items():
        b_uses, b_rows = base.get(key, (0, 0))
        assert got[key] == (b_uses + n, b_rows + rows[key]), key
    per_day = s.usage.summary(["day"])
    assert sum(r.uses for r in per_day) == sum(u for u, _ in got.values())
    assert {r.day for r in per_day} == {world.clock.now.date()}
    purposes = {r.purpose for r in s.usage.summary(["purpose"], consumers=["police"])}
    assert "with_grant work" in purposes  # a read under a grant is metered with the grant's purpose


def test_uses_are_written_in_batches_and_sent_to_the_ledger_hook(world: World) -> None:
    facts: list[tuple[str, dict[str, Any]]] = []
    u = Usage(world.cb.meta, world.clock, lambda k, p: facts.append((k, p)), batch=5, interval=3600)
    u.flush()

    def stored() -> int:
        with world.cb.meta.connect() as c:
            return int(c.execute(select(func.coalesce(func.sum(usage_table.c.uses), 0))).scalar() or 0)

    before = stored()
    for i in range(4):
        u.record("lab", "visits", "bbox", i, "batching")
    assert stored() == before and u.pending() == 4 and facts == []
    u.record("lab", "visits", "bbox", 10, "batching")
    assert stored() == before + 5 and u.pending() == 0
    assert [k for k, _ in facts] == ["use"]
    assert facts[0][1]["count"] == 5 and sum(facts[0][1]["rows"]) == 16 == 0 + 1 + 2 + 3 + 10


def test_use_facts_fit_in_a_ledger_entry(world: World) -> None:
    from citybase.ledger.entry import encode

    facts: list[tuple[str, dict[str, Any]]] = []
    u = Usage(world.cb.meta, world.clock, lambda k, p: facts.append((k, p)), batch=10**9, interval=3600)
    for i in range(3000):
        u.record(f"dept{i % 7}", "visits", "bbox", i, "为了城市治理的研究目的" * (1 + i % 20))
    u.flush()
    assert len(facts) > 1 and sum(p["count"] for _, p in facts) == 3000
    assert sum(sum(p["rows"]) for _, p in facts) == sum(range(3000))
    assert all(len(encode(k, p)) < 0xFFFF for k, p in facts)


def test_metering_is_cheap(world: World) -> None:
    u = Usage(world.cb.meta, world.clock, batch=10_000, interval=3600)
    n = 50_000
    t = time.perf_counter()
    for i in range(n):
        u.record(f"dept{i % 40}", f"ds{i % 300}", "bbox", i % 100, "bench")
    u.flush()
    per_use = (time.perf_counter() - t) / n
    # 93 million uses a year are about 3 a second: this is four orders of magnitude of headroom.
    assert per_use < 200e-6, f"{per_use * 1e6:.1f} µs per use"


def test_platform_figures(world: World) -> None:
    share = Sharing(world.cb)  # the real clock: new records are dated by the time they arrived
    st = share.stats(days=3)
    lake = world.cb.lake.stats()
    assert st.datasets == len(world.cb.datasets) == len(lake)
    assert st.total_records == sum(lake.values())
    assert st.systems_connected >= 2 and st.departments >= 8
    assert sum(d.count for d in st.new_records_per_day) == sum(lake.values())  # all arrived today
    assert st.new_records_per_day[-1].day == datetime.now(UTC).date()
    assert st.data_uses == sum(r.uses for r in share.usage.summary([]))
    share.close()


def test_usage_and_stats_over_http(world: World) -> None:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    c = TestClient(app)
    c.get("/api/v1/data/visits/counts", headers=world.headers("with_grant"))
    r = c.get("/api/v1/usage?by=day&by=consumer", headers=world.headers("operator"))
    assert r.status_code == 200 and any(x["consumer"] == "police" for x in r.json())
    assert c.get("/api/v1/usage?by=colour", headers=world.headers("operator")).status_code == 400
    st = c.get("/api/v1/stats?days=2", headers=world.headers("with_grant")).json()
    assert st["datasets"] == len(world.cb.datasets) and len(st["data_uses_per_day"]) == 2


def test_cli_stats(tmp_path: Any) -> None:
    from citybase.platform import CityBase
    from test_share_world import visit_spec

    root = tmp_path / "cb"
    with CityBase(root) as cb:  # (closed: the CLI opens the platform on its own, ADR 0007)
        cb.declare(visit_spec("visits", "conditional"))
        cb.ingest("visits", visit_rows()[:5])
        cb.flush()
    out = CliRunner().invoke(cli(), ["stats", "--json", "--days", "2", "--root", str(root)])
    assert out.exit_code == 0, out.output
    st = json.loads(out.output)
    assert (st["datasets"], st["total_records"]) == (1, 5)


@pytest.mark.slow
def test_cli_access_round_trip(tmp_path: Any) -> None:
    from citybase.platform import CityBase
    from test_share_world import visit_spec

    root = tmp_path / "cb"
    with CityBase(root) as cb:
        for d in ("health", "police"):
            cb.registry.add_department(d)
        cb.declare(visit_spec("visits", "conditional"))
        cb.ingest("visits", visit_rows()[:5])
    r, app = CliRunner(), cli()
    base = ["--root", str(root)]
    out = r.invoke(
        app,
        ["access", "request", "visits", "--purpose", "audit", "--field", "visit_id", "--as", "police", *base],
    )
    assert out.exit_code == 0, out.output
    rid = out.output.split()[1].rstrip(":")
    out = r.invoke(app, ["access", "list", "--box", "incoming", "--json", "--as", "health", *base])
    assert [x["id"] for x in json.loads(out.output)] == [rid]
    out = r.invoke(app, ["access", "approve", rid, "--days", "30", "--as", "police", *base])
    assert out.exit_code == 1 and "forbidden" in out.output  # a consumer does not approve itself
    out = r.invoke(app, ["access", "approve", rid, "--days", "30", "--as", "health", *base])
    assert out.exit_code == 0 and "approved" in out.output
    out = r.invoke(app, ["access", "list", "--grants", "--json", "--as", "police", *base])
    assert json.loads(out.output)[0]["granted_fields"] is None and json.loads(out.output)[0]["narrowed"]
    out = r.invoke(app, ["access", "revoke", rid, "--reason", "done", "--as", "health", *base])
    assert "revoked" in out.output
    out = r.invoke(app, ["access", "refuse", rid, *base])
    assert out.exit_code == 1 and "conflict" in out.output
    out = r.invoke(app, ["usage", "summary", "--by", "consumer", *base])
    assert out.exit_code == 0 and "usage" in out.output


def test_facts_reach_the_platform_ledger(tmp_path: Any) -> None:
    """With the platform's ledger as the hook (the lead's wiring), every fact is accepted."""
    from citybase.platform import CityBase
    from test_share_world import visit_spec

    if not hasattr(CityBase, "record"):
        pytest.skip("this platform has no ledger yet")
    with CityBase(tmp_path / "cb") as cb:
        for d in ("health", "police"):
            cb.registry.add_department(d)
        cb.declare(visit_spec("visits", "conditional"))
        cb.ingest("visits", visit_rows()[:5])
        cb.flush()
        seen: list[tuple[str, int]] = []
        share = Sharing(cb, on_fact=lambda k, p: seen.append((k, cb.record(k, p))))
        from citybase.registry import Principal, Role
        from citybase.share import Decision

        police, health = Principal("police", Role.MEMBER, "p"), Principal("health", Role.MEMBER, "h")
        r = share.request(police, "visits", purpose="ledger")
        share.decide(health, r.id, Decision(action="approve"))
        share.read(police, "visits", "bbox", bbox=(116.2, 39.8, 116.5, 40.0))
        share.revoke(health, r.id)
        share.close()
        assert [k for k, _ in seen] == ["grant", "revoke", "use"]
        assert [i for _, i in seen] == sorted(i for _, i in seen)


def test_counts_over_http_by_the_clock_of_a_time_zone(world: World) -> None:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    c = TestClient(app)
    h = world.headers("with_grant")
    url = "/api/v1/data/visits/counts?level=district&every=1h"
    utc, local = (c.get(url + tz, headers=h) for tz in ("", "&tz=America/St_Johns"))
    assert utc.status_code == local.status_code == 200, local.text
    a, b = utc.json()["rows"], local.json()["rows"]
    assert sum(r["count"] for r in a) == sum(r["count"] for r in b) > 0
    # St John's is 2.5 or 3.5 h behind UTC: its hours start at :30 UTC, and are labelled locally.
    assert {r["bucket"][14:16] for r in b} == {"00"} and {r["bucket"] for r in a} != {r["bucket"] for r in b}
    bad = c.get(url + "&tz=Mars/Olympus", headers=h)
    assert bad.status_code == 400 and "IANA" in bad.text
