"""The catalog: search against a brute-force filter of the declarations, facets, paging, coverage
from lake statistics, the DCAT export's structure, and the catalog CLI."""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from citybase.api.app import create_app
from citybase.cli.share import access_app, catalog_app, stats_app, usage_app
from citybase.errors import InputError
from citybase.platform import CityBase
from citybase.registry import Principal, Role
from citybase.share import CatalogMeta, OpenAttribute, Sharing
from citybase.share.dcat import CONTEXT
from test_share_world import DATASETS, T0, World, build_world, visit_rows

DEPTS = ["ps", "hrss", "health", "transport", "ecology"]
KINDS = ["points", "records"]
SHARING = ["unconditional", "conditional", "not_shared"]
CYCLES = ["daily", "monthly", "real-time"]
WORDS = ["人口", "air", "taxi", "企业", "school", "noise", "permit", "parking", "社保", "water"]


def random_spec(rng: random.Random, i: int) -> dict[str, Any]:
    kind = rng.choice(KINDS)
    words = rng.sample(WORDS, 2)
    fields: list[dict[str, Any]] = [{"name": "id"}, {"name": "note", "description": f"about {words[1]}"}]
    if rng.random() < 0.5:
        fields.append({"name": "owner", "personal": "name"})
    spec: dict[str, Any] = {
        "name": f"ds_{i:02d}",
        "title": f"{words[0]} register {i}",
        "description": f"The {words[0]} data of the city",
        "department": rng.choice(DEPTS),
        "system": f"sys{rng.randint(0, 3)}",
        "kind": kind,
        "sharing": rng.choice(SHARING),
        "update_cycle": rng.choice(CYCLES),
        "fields": fields,
    }
    if kind == "points":
        spec["fields"] += [{"name": "x", "type": "float"}, {"name": "y", "type": "float"}]
        spec["geometry"] = {"lon": "x", "lat": "y"}
    return spec


@pytest.fixture(scope="module")
def catalog() -> Iterator[tuple[Sharing, list[dict[str, Any]], dict[str, CatalogMeta]]]:
    root = Path(tempfile.mkdtemp(prefix="citybase-catalog-"))
    cb = CityBase(root)
    rng = random.Random(7)
    specs = [random_spec(rng, i) for i in range(30)]
    metas: dict[str, CatalogMeta] = {}
    share = Sharing(cb)
    op = Principal("operator", Role.ADMIN, "k")
    for s in specs:
        cb.declare(s)
        if rng.random() < 0.6:
            m = CatalogMeta(keywords=rng.sample(WORDS, 2), open=rng.choice(list(OpenAttribute)))
            share.describe(op, s["name"], m)
            metas[s["name"]] = m
    yield share, specs, metas
    share.close()
    cb.close()
    shutil.rmtree(root, ignore_errors=True)


def brute_text(s: dict[str, Any], m: CatalogMeta) -> str:
    items = " ".join(f"{f['name']} {f.get('description', '')}" for f in s["fields"])
    return " ".join(
        [s["name"], s["title"], s["description"], s["department"], s["system"], *m.keywords, items]
    ).lower()


def brute_values(s: dict[str, Any], m: CatalogMeta) -> dict[str, list[str]]:
    return {
        "provider": [s["department"]],
        "system": [s["system"]],
        "kind": [s["kind"]],
        "sharing": [s["sharing"]],
        "open": [m.open.value],
        "update_cycle": [s["update_cycle"]],
        "keyword": list(m.keywords),
        "personal": ["true" if any(f.get("personal") for f in s["fields"]) else "false"],
    }


def test_search_matches_brute_force(catalog: Any) -> None:
    share, specs, metas = catalog
    rng = random.Random(11)
    checked = 0
    for _ in range(150):
        terms = rng.sample([*WORDS, "register", "city", "owner", "nothing_like_this"], rng.randint(0, 2))
        filters: dict[str, list[str]] = {}
        for field, choices in (
            ("provider", DEPTS),
            ("kind", KINDS),
            ("sharing", SHARING),
            ("open", [o.value for o in OpenAttribute]),
        ):
            if rng.random() < 0.3:
                filters[field] = rng.sample(choices, rng.randint(1, 2))
        want = []
        for s in specs:
            m = metas.get(s["name"], CatalogMeta())
            vals = brute_values(s, m)
            if all(t.lower() in brute_text(s, m) for t in terms) and all(
                set(vals[f]) & set(vs) for f, vs in filters.items()
            ):
                want.append(s)
        got = share.search(" ".join(terms), filters, rows=1000, sort="name asc")
        assert [e.name for e in got.results] == sorted(s["name"] for s in want)
        assert got.count == len(want)
        facets = {
            f: Counter(v for s in want for v in brute_values(s, metas.get(s["name"], CatalogMeta()))[f])
            for f in got.facets
        }
        assert got.facets == {f: dict(c) for f, c in facets.items()}
        checked += bool(want)
    assert checked > 30  # most random queries find something


def test_paging_and_sorting(catalog: Any) -> None:
    share, specs, _ = catalog
    names = sorted(s["name"] for s in specs)
    pages = [share.search(rows=10, start=i, sort="name asc").results for i in range(0, 30, 10)]
    assert [e.name for p in pages for e in p] == names
    assert [e.name for e in share.search(rows=100, sort="name desc").results] == names[::-1]
    scored = share.search("air", rows=100)
    assert scored.sort == "score desc"
    in_title = [e.name for e in scored.results if "air" in e.title]
    assert [e.name for e in scored.results][: len(in_title)] == in_title  # title hits weigh more
    with pytest.raises(InputError):
        share.search(sort="random")
    with pytest.raises(InputError):
        share.search(filters={"colour": ["red"]})


# -- coverage and the world's entries ----------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = build_world()
    yield w
    w.close()


def test_entry_fields_and_coverage(world: World) -> None:
    e = world.share.entry("visits")
    rows = visit_rows()
    assert e.rows == len(rows) and e.provider == "health" and e.provider_name == "Health"
    assert e.sharing == "conditional" and e.update_cycle == "daily" and e.keywords == ["health"]
    assert e.personal and {i.name: i.personal for i in e.items}["id_number"] == "id_number"
    assert {i.name: i.unit for i in e.items}["cost"] == "CNY"
    assert e.start == min(r["t"] for r in rows) and e.end == max(r["t"] for r in rows)
    assert e.bbox == pytest.approx(
        (
            min(r["x"] for r in rows),
            min(r["y"] for r in rows),
            max(r["x"] for r in rows),
            max(r["y"] for r in rows),
        )
    )
    assert e.last_update is not None and e.format == "GeoParquet"
    assert re.fullmatch(r"health/his-\d{6}", e.code)


def test_coverage_follows_the_lake(world: World) -> None:
    before = world.share.entry("vaccinations").rows
    world.cb.ingest("vaccinations", [{**visit_rows()[0], "visit_id": "new", "t": T0.replace(day=9)}])
    world.cb.flush()
    e = world.share.entry("vaccinations")
    assert e.rows == before + 1 and e.end == T0.replace(day=9)


def test_dcat_structure(world: World) -> None:
    doc = json.loads(json.dumps(world.share.dcat("https://city.example")))
    assert doc["@type"] == "dcat:Catalog" and doc["@context"] == CONTEXT
    prefixes = {k for k, v in CONTEXT.items() if isinstance(v, str)}
    ids: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not k.startswith("@"):
                    assert k.split(":")[0] in prefixes, k  # every term is in a declared vocabulary
                if k == "@id":
                    ids.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc["dcat:dataset"])
    by_id = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    assert len(by_id) == len(world.cb.datasets)
    d = next(x for x in doc["dcat:dataset"] if x["@id"].endswith("/catalog/visits"))
    assert d["@type"] == "dcat:Dataset"
    assert d["dct:publisher"]["@type"] == "foaf:Agent" and d["dct:publisher"]["foaf:name"] == "Health"
    assert {x["@type"] for x in d["dcat:distribution"]} == {"dcat:Distribution"}
    assert {x["dcat:mediaType"] for x in d["dcat:distribution"]} >= {"application/geo+json"}
    assert d["dct:spatial"]["dcat:bbox"].startswith("POLYGON((116.3")
    assert d["dct:temporal"]["dcat:startDate"] == "2024-05-01T08:00:00"
    assert d["dct:accrualPeriodicity"].endswith("/DAILY")
    assert d["citybase:sharingAttribute"] == "conditional" and d["citybase:openAttribute"] == "not_open"
    assert {x["citybase:name"]: x["citybase:personal"] for x in d["citybase:dataItem"]}["phone"] == "phone"
    dist_ids = [i for i in ids if "#" in i]
    assert len(dist_ids) == len(set(dist_ids))


def test_catalog_over_http(world: World) -> None:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    c = TestClient(app)
    h = world.headers("other_tenant")
    r = c.get("/api/v1/catalog", params={"fq": "sharing:not_shared", "facet": ["provider"]}, headers=h)
    assert r.status_code == 200 and [e["name"] for e in r.json()["results"]] == [DATASETS["not_shared"]]
    assert r.json()["facets"] == {"provider": {"health": 1}}
    r = c.get("/api/v1/catalog", params={"q": "visits", "sharing": "conditional"}, headers=h)
    assert [e["name"] for e in r.json()["results"]] == ["visits"]
    ld = c.get("/api/v1/catalog.jsonld", headers=h)
    assert (
        ld.headers["content-type"].startswith("application/ld+json") and ld.json()["@type"] == "dcat:Catalog"
    )
    # Only the provider describes its dataset.
    body = {"abstract": "mine now", "keywords": ["x"]}
    assert c.put("/api/v1/catalog/visits", json=body, headers=h).status_code == 403
    old = world.share.catalog.meta("visits")
    try:
        r = c.put(
            "/api/v1/catalog/visits",
            json={**old.model_dump(mode="json"), "abstract": "Visits."},
            headers=world.headers("provider"),
        )
        assert r.status_code == 200 and r.json()["abstract"] == "Visits."
    finally:
        world.share.catalog.set_meta("visits", old, by="test")
    assert c.get("/api/v1/catalog/nope", headers=h).status_code == 404


# -- the CLI --------------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(access_app, name="access")
    app.add_typer(usage_app, name="usage")
    app.add_typer(stats_app, name="stats")
    return app


def test_cli_catalog(tmp_path: Path) -> None:
    root = tmp_path / "cb"
    with CityBase(root) as cb:
        cb.registry.add_department("health")
        cb.declare(build_spec())
    r = CliRunner()
    app = cli()
    out = r.invoke(
        app,
        [
            "catalog",
            "describe",
            "visits",
            "--keyword",
            "hospital",
            "--open",
            "conditional",
            "--as",
            "health",
            "--root",
            str(root),
        ],
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(app, ["catalog", "search", "hospital", "--json", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["results"][0]["open"] == "conditional"
    out = r.invoke(app, ["catalog", "search", "--root", str(root)])
    assert "visits" in out.output and "1 data resources" in out.output
    out = r.invoke(app, ["catalog", "dcat", "--out", str(tmp_path / "c.jsonld"), "--root", str(root)])
    assert out.exit_code == 0 and json.loads((tmp_path / "c.jsonld").read_text())["@type"] == "dcat:Catalog"
    out = r.invoke(app, ["catalog", "show", "nope", "--root", str(root)])
    assert out.exit_code == 1 and "not_found" in out.output
    for group in ("catalog", "access", "usage", "stats"):
        assert r.invoke(app, [group, "--help"]).exit_code == 0


def build_spec() -> dict[str, Any]:
    from test_share_world import visit_spec

    return visit_spec("visits", "conditional")
