"""Privacy-preserving aggregates: threshold suppression against brute force, the differencing
attack, dominance, and differential privacy with its budget."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citybase.api.app import create_app
from citybase.errors import InputError
from citybase.share import AggregatePolicy, AggregateQuery, BudgetExhausted, CatalogMeta, Grain
from test_share_world import T0, K, World, build_world, visit_rows

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


def brute(rows: list[dict[str, Any]]) -> dict[tuple[str, datetime], dict[str, Any]]:
    """Per (district, day): rows, distinct people, and the cost per person."""
    cells: dict[tuple[str, datetime], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "people": set(), "cost": defaultdict(float)}
    )
    for r in rows:
        district = "A" if r["x"] < 116.35 else "B"
        day = datetime(r["t"].year, r["t"].month, r["t"].day)
        c = cells[(district, day)]
        c["n"] += 1
        c["people"].add(r["id_number"])
        c["cost"][r["id_number"]] += r["cost"]
    return dict(cells)


def exact(
    w: World, role: str = "without_grant", ds: str = "hiv_cases", **kw: Any
) -> dict[tuple[str, Any], float]:
    q = AggregateQuery(**{"level": "district", "every": "1d", "start": T0, "end": T0 + 3 * DAY, **kw})
    t = w.share.aggregate(w.who(role), ds, q).table
    return {(r["code"], r.get("bucket")): r["value"] for r in t.to_pylist()}


def test_suppression_matches_brute_force(world: World) -> None:
    cells = brute(visit_rows())
    want_count = {k: float(c["n"]) for k, c in cells.items() if len(c["people"]) >= K}
    want_people = {k: float(len(c["people"])) for k, c in cells.items() if len(c["people"]) >= K}
    assert exact(world) == want_count
    assert exact(world, measure="contributors") == want_people
    assert ("A", T0 + DAY) in cells and ("A", T0 + DAY) not in want_count  # a cell with 2 people exists
    mean = exact(world, measure="mean", field="cost")
    for k, v in mean.items():
        c = [
            r["cost"]
            for r in visit_rows()
            if ("A" if r["x"] < 116.35 else "B", r["t"].replace(hour=0, minute=0)) == k
        ]
        assert v == pytest.approx(sum(c) / len(c))


def test_the_consumer_needs_no_grant_and_sees_no_row(world: World) -> None:
    # The transport department holds no grant and the dataset is not shared: aggregates still work.
    assert exact(world, role="without_grant", ds="hiv_cases")
    c = TestClient(create_app(world.cb, background=False))
    c.app.state.share = world.share  # type: ignore[attr-defined]
    r = c.get(
        "/api/v1/aggregates/hiv_cases?level=district&every=1d&start=2024-05-01T00:00:00&end=2024-05-04T00:00:00",
        headers=world.headers("without_grant"),
    )
    assert r.status_code == 200
    assert {tuple(sorted(x)) for x in r.json()["cells"]} == {("bucket", "code", "value")}


def test_differencing_attack_reveals_nothing(world: World) -> None:
    """The attacker wants district A on day 1 (2 people, below k). Every way to ask for numbers
    whose difference would be that cell is refused, and no published number depends on it: adding
    a visit to the suppressed cell changes none of the answers to any query the attacker may ask."""
    target = ("A", T0 + DAY)
    # 1. Overlapping windows as totals: [d0, d2) minus [d0, d1) is [d1, d2).
    with pytest.raises(InputError):
        exact(world, every=None, start=T0, end=T0 + 2 * DAY)
    # 2. Windows that do not fall on bin edges, so that two overlapping ones differ by a slice.
    with pytest.raises(InputError):
        exact(world, start=T0 + timedelta(hours=12), end=T0 + 2 * DAY)
    # 3. A coarser bin (a week holding day 1) or level (a big H3 cell over both districts) minus the rest.
    for kw in (
        {"every": "1w", "start": T0 - 2 * DAY, "end": T0 + 5 * DAY},
        {"level": "h3:4"},
        {"level": "street"},
    ):
        with pytest.raises(InputError):
            exact(world, **kw)
    # 4. Every legal query (all windows of whole days) before and after changing the hidden cell.
    windows = [(T0 + i * DAY, T0 + j * DAY) for i in range(-1, 4) for j in range(i + 1, 5)]

    def answers() -> list[dict[tuple[str, Any], float]]:
        out = []
        for s, e in windows:
            for m in ("count", "contributors", "sum", "mean"):
                out.append(
                    exact(
                        world,
                        start=s,
                        end=e,
                        measure=m,
                        field=None if m in ("count", "contributors") else "cost",
                    )
                )
        return out

    before = answers()
    assert all(target not in a for a in before)
    extra = next(r for r in visit_rows() if r["t"].date() == (T0 + DAY).date() and r["x"] < 116.35)
    world.cb.ingest(
        "hiv_cases", [{**extra, "visit_id": "extra", "t": extra["t"] + timedelta(minutes=5), "cost": 9999.0}]
    )
    world.cb.flush()
    try:
        assert answers() == before
        # A published cell's values do not depend on the window asked: overlapping queries agree.
        a, b = exact(world, start=T0, end=T0 + 2 * DAY), exact(world, start=T0 + DAY, end=T0 + 3 * DAY)
        assert {k: v for k, v in a.items() if k in b} == {k: v for k, v in b.items() if k in a}
    finally:
        world.cb.sql("DELETE FROM lake.hiv_cases WHERE visit_id = 'extra'")


def test_dominance_withholds_sums_not_counts(world: World) -> None:
    s, prov = world.share, world.who("provider")
    old = s.catalog.meta("visits")
    pol = old.policy.model_copy(update={"dominance": 0.7})
    s.describe(prov, "visits", old.model_copy(update={"policy": pol}))
    try:
        d0 = ("A", T0)
        cells = brute(visit_rows())[d0]
        share = max(cells["cost"].values()) / sum(cells["cost"].values())
        assert 0.7 < share < 0.9  # person 0's two large visits
        assert d0 in exact(world, ds="visits", measure="count")
        assert d0 not in exact(world, ds="visits", measure="sum", field="cost")
    finally:
        s.describe(prov, "visits", old)


def test_exact_aggregates_on_an_h3_grain(world: World) -> None:
    s, prov = world.share, world.who("provider")
    old = s.catalog.meta("vaccinations")
    s.describe(
        prov,
        "vaccinations",
        old.model_copy(
            update={
                "policy": AggregatePolicy(k=2, contributor="id_number", grain=Grain(level="h3:7", every="1d"))
            }
        ),
    )
    try:
        got = exact(world, ds="vaccinations", level="h3:7")
        direct = world.cb.query.h3_bins(
            "vaccinations", 7, T0, T0 + 3 * DAY, "1d", {"id_number": "count_distinct"}
        )
        want = {
            (r["cell"], r["bucket"]): float(r["count"])
            for r in direct.to_pylist()
            if r["id_number_count_distinct"] >= 2
        }
        assert got == want and got
    finally:
        s.describe(prov, "vaccinations", old)


def test_exact_aggregates_by_the_clock_of_the_grains_time_zone(world: World) -> None:
    # The provider's grain counts Beijing days: bins from 16:00 UTC, labelled in local time.
    s, prov = world.share, world.who("provider")
    old = s.catalog.meta("vaccinations")
    grain = Grain(level="district", every="1d", tz="Asia/Shanghai")
    s.describe(
        prov,
        "vaccinations",
        old.model_copy(update={"policy": AggregatePolicy(k=2, contributor="id_number", grain=grain)}),
    )
    start, end = T0 - timedelta(hours=8), T0 + 3 * DAY - timedelta(hours=8)  # Beijing midnights
    try:
        got = exact(world, ds="vaccinations", start=start, end=end, measure="contributors")
        direct = world.cb.query.counts_by_place(
            "vaccinations", "district", start, end, "1d", {"id_number": "count_distinct"}, tz="Asia/Shanghai"
        )
        want = {
            (r["code"], r["bucket"]): float(r["id_number_count_distinct"])
            for r in direct.to_pylist()
            if r["id_number_count_distinct"] >= 2
        }
        assert got == want and got
        assert all(b.hour == 0 for _, b in got)  # local midnights
        with pytest.raises(InputError, match="Asia/Shanghai"):  # UTC midnight is 08:00 in Beijing
            exact(world, ds="vaccinations")
        dp = world.share.aggregate(
            world.who("other_tenant"),
            "vaccinations",
            AggregateQuery(level="district", every="1d", start=start, end=end, mode="dp", epsilon=0.1),
        )
        assert {r["bucket"] for r in dp.table.to_pylist()} <= {T0, T0 + DAY, T0 + 2 * DAY}
    finally:
        s.describe(prov, "vaccinations", old)
    with pytest.raises(ValueError, match="IANA"):
        Grain(tz="Beijing")


def test_measure_checks(world: World) -> None:
    with pytest.raises(InputError):
        exact(world, measure="sum")  # no field
    with pytest.raises(InputError):
        exact(world, measure="sum", field="phone")  # personal and not numeric
    with pytest.raises(InputError):
        exact(world, every="2d")


# -- differential privacy ---------------------------------------------------------------------------


def _dp(w: World, role: str, eps: float, **kw: Any) -> Any:
    q = AggregateQuery(level="district", every="1d", start=T0, end=T0 + 3 * DAY, mode="dp", epsilon=eps, **kw)
    return w.share.aggregate(w.who(role), "hiv_cases", q)


def test_dp_budget_is_tracked_and_enforced(world: World) -> None:
    s, prov = world.share, world.who("provider")
    old = s.catalog.meta("hiv_cases")
    s.describe(
        prov,
        "hiv_cases",
        old.model_copy(update={"policy": old.policy.model_copy(update={"epsilon_budget": 0.3})}),
    )
    try:
        lefts = [_dp(world, "expired", 0.1).epsilon_left for _ in range(3)]
        assert lefts == pytest.approx([0.2, 0.1, 0.0])
        with pytest.raises(BudgetExhausted):
            _dp(world, "expired", 0.1)
        with pytest.raises(BudgetExhausted):  # a refused query is not charged: still exhausted, not over
            _dp(world, "expired", 0.05)
        assert s.budget(world.who("expired"), "hiv_cases").spent == pytest.approx(0.3)
        assert _dp(world, "revoked", 0.1).epsilon == pytest.approx(0.1)  # budgets are per consumer
        c = TestClient(create_app(world.cb, background=False))
        c.app.state.share = world.share  # type: ignore[attr-defined]
        r = c.get(
            "/api/v1/aggregates/hiv_cases?mode=dp&epsilon=0.1&start=2024-05-01T00:00:00&end=2024-05-04T00:00:00",
            headers=world.headers("expired"),
        )
        assert r.status_code == 403 and r.json()["error"] == "budget_exhausted"
    finally:
        s.describe(prov, "hiv_cases", old)


def test_dp_counts_are_close_at_large_epsilon(world: World) -> None:
    s, prov = world.share, world.who("provider")
    old = s.catalog.meta("hiv_cases")
    s.describe(
        prov,
        "hiv_cases",
        old.model_copy(update={"policy": old.policy.model_copy(update={"epsilon_budget": 1000})}),
    )
    try:
        res = _dp(world, "other_tenant", 10.0)
        got = {(r["code"], r["bucket"]): r["value"] for r in res.table.to_pylist()}
        cells = brute(visit_rows())
        for k, c in cells.items():
            if len(c["people"]) >= K + 2:
                assert got[k] == pytest.approx(len(c["people"]), abs=2)
        assert all(k in cells for k in got)  # empty cells stay below k at this epsilon
        mean = _dp(world, "other_tenant", 10.0, measure="mean", field="cost", bounds=(0.0, 2500.0))
        assert mean.table.num_rows > 0 and all(0 <= v <= 2500 for v in mean.table.column("value").to_pylist())
    finally:
        s.describe(prov, "hiv_cases", old)


def test_dp_refuses_what_it_cannot_protect(world: World) -> None:
    with pytest.raises(InputError):
        _dp(world, "other_tenant", 0.1, measure="sum", field="cost")  # no bounds
    with pytest.raises(InputError):
        world.share.aggregate(
            world.who("other_tenant"),
            "hiv_cases",
            AggregateQuery(level="h3:7", mode="dp", start=T0, end=T0 + DAY),
        )
    with pytest.raises(InputError):  # no window: the cells would not be known in advance
        world.share.aggregate(world.who("other_tenant"), "hiv_cases", AggregateQuery(mode="dp"))


def test_meta_round_trip(world: World) -> None:
    m = world.share.catalog.meta("visits")
    assert isinstance(m, CatalogMeta) and m.policy.k == K
