"""Masked reads from shadow columns (docs/adr/0005): personal text fields are masked once, when
the rows are written, into `<field>__masked` columns that a masked read takes as they are.

What must hold: the shadow values are exactly share/masking.py's masks of the stored values (both
ways into the lake: the durable log's flush and a file load); every way a consumer reads (the query
API, SQL over `city.<dataset>` views, HTTP in JSON, Arrow and GeoJSON) returns masked values for a
masked grant; shadow columns never show as columns of their own to anyone reading through the
engine, and never hold a raw value; a table made before shadow columns is masked at read time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from citybase.api.app import create_app
from citybase.errors import InputError
from citybase.gateway.conform import shadows
from citybase.model.dataset import DatasetSpec, Personal
from citybase.model.layout import SHADOW_SUFFIX, shadow_columns, stored_columns, table_columns
from citybase.platform import CityBase
from citybase.query.demo import demo_city
from citybase.query.scope import ReadScope
from citybase.share import Decision
from citybase.share.masking import PYTHON_MASKS, mask_arrow, mask_sql
from citybase.share.scope import grant_scope
from test_share_world import PROVIDER, T0, World, build_world

#: Personal text fields of the rides dataset, and their classes.
PERSONAL = {
    "driver": Personal.name,
    "phone": Personal.phone,
    "card": Personal.id_number,
    "home": Personal.address,
    "mail": Personal.email,
    "note": Personal.other,
}
RIDES: dict[str, Any] = {
    "name": "rides",
    "department": PROVIDER,
    "system": "his",
    "kind": "tracks",
    "time_field": "t",
    "object_field": "vehicle",
    "geometry": {"lon": "x", "lat": "y"},
    "sharing": "conditional",
    "fields": [
        {"name": "vehicle", "type": "string"},
        {"name": "t", "type": "timestamp"},
        {"name": "x", "type": "float"},
        {"name": "y", "type": "float"},
        *({"name": n, "type": "string", "personal": p.value} for n, p in PERSONAL.items()),
        {"name": "born", "type": "date", "personal": "other"},  # not text: masked to NULL, no shadow
        {"name": "fare", "type": "float"},
    ],
}
ALPHABET = "张三李四欧阳娜诸葛孔明北京市朝阳区望京街道号楼abcXYZ0123456789@.-_ 🦆é\u0301"


def _text(rng: random.Random) -> str | None:
    """A value of any shape a mask must survive: missing, short, long, with and without '@'."""
    r = rng.random()
    if r < 0.08:
        return None
    if r < 0.2:
        return rng.choice(
            ["x", "@", "@a", "a@", "李", "1234567", "12345678", "北京市朝阳区", "zhang@example.cn"]
        )
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 24)))


def ride_rows(n: int, seed: int, hour: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "vehicle": f"v{i % 5}",
            "t": T0 + timedelta(hours=hour, minutes=i),
            "x": 116.30 + 0.001 * (i % 40),
            "y": 39.90 + 0.001 * (i % 30),
            **{f: _text(rng) for f in PERSONAL},
            "born": "1990-03-07",
            "fare": float(i),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world()
    cb = w.cb
    cb.declare(RIDES)
    cb.ingest("rides", ride_rows(150, seed=1, hour=0))  # through the durable log and a flush
    cb.flush()
    path = tmp_path_factory.mktemp("rides") / "rides.csv"
    pcsv.write_csv(pa.Table.from_pylist(ride_rows(150, seed=2, hour=6)), path)
    cb.load("rides", path)  # a file load, straight into the lake
    r = w.share.request(w.who("with_grant"), "rides", purpose="masking tests")
    w.share.decide(w.who("provider"), r.id, Decision(action="approve"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    app = create_app(world.cb, background=False)
    app.state.share = world.share
    return TestClient(app)


def stored(world: World) -> dict[tuple[str, int], dict[str, Any]]:
    """Every stored row of rides, shadow columns included (the operator's raw SQL), by provenance."""
    t = world.cb.sql('SELECT * FROM lake."rides"')
    return {(r["_batch"], r["_line"]): r for r in t.to_pylist()}


# -- the masks' three forms ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=30)), max_size=12),
    st.sampled_from(list(Personal)),
)
def test_arrow_masks_match_python_masks(values: list[str | None], personal: Personal) -> None:
    got = mask_arrow(pa.array(values, pa.string()), personal).to_pylist()
    assert got == [PYTHON_MASKS[personal](v) for v in values]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=30)), max_size=12))
def test_shadows_of_a_batch_are_the_python_masks(values: list[str | None]) -> None:
    spec = DatasetSpec.model_validate(RIDES)
    got = shadows(spec, {f: pa.array(values, pa.string()) for f in PERSONAL})
    assert set(got) == {f + SHADOW_SUFFIX for f in PERSONAL}
    for f, p in PERSONAL.items():
        assert got[f + SHADOW_SUFFIX].to_pylist() == [PYTHON_MASKS[p](v) for v in values]


def test_only_personal_text_fields_have_shadow_columns() -> None:
    spec = DatasetSpec.model_validate(RIDES)
    assert shadow_columns(spec) == {f: f + SHADOW_SUFFIX for f in PERSONAL}
    names = [n for n, _, _ in stored_columns(spec)]
    assert not [n for n in names if n.endswith(SHADOW_SUFFIX)]
    assert [n for n, _, _ in table_columns(spec)] == names + [f + SHADOW_SUFFIX for f in PERSONAL]
    # A declared field that already has a shadow's name keeps it; that mask is computed at read.
    clash = DatasetSpec.model_validate(
        {**RIDES, "fields": [*RIDES["fields"], {"name": "phone__masked", "type": "string"}]}
    )
    assert "phone" not in shadow_columns(clash) and "driver" in shadow_columns(clash)
    assert "phone" not in grant_scope(clash, None).shadows


# -- what is written ---------------------------------------------------------------------------------


def test_shadow_columns_hold_the_mask_of_the_stored_value(world: World) -> None:
    rows = stored(world).values()
    assert len(rows) == 300 and len({r["_batch"] for r in rows}) == 2  # the flush's and the load's
    for f, p in PERSONAL.items():
        raw = [r[f] for r in rows]
        assert [r[f + SHADOW_SUFFIX] for r in rows] == [PYTHON_MASKS[p](v) for v in raw]
        assert len({v for v in raw if v is not None}) > 100  # the values vary: the test means something
        # No shadow holds a raw value (except where the mask of a value is the value itself).
        leaked = [r for r in rows if r[f] is not None and r[f + SHADOW_SUFFIX] == r[f]]
        assert all(PYTHON_MASKS[p](r[f]) == r[f] for r in leaked)


# -- what is read ------------------------------------------------------------------------------------

BOX = (116.2, 39.8, 116.5, 40.0)


def _reads(world: World, client: TestClient) -> dict[str, Callable[[str], pa.Table]]:
    """Every way a reader (by role) reads rides rows, each returning them as an Arrow table."""
    s, cb = world.share, world.cb

    def http(path: str, accept: str = "application/json", body: dict[str, Any] | None = None) -> Any:
        def call(role: str) -> pa.Table:
            h = {**world.headers(role), "Accept": accept}
            r = client.post(path, json=body, headers=h) if body is not None else client.get(path, headers=h)
            assert r.status_code == 200, r.text
            if accept == "application/vnd.apache.arrow.stream":
                return pa.ipc.open_stream(r.content).read_all()
            if accept == "application/geo+json":
                return pa.Table.from_pylist([f["properties"] for f in r.json()["features"]])
            return pa.Table.from_pylist(r.json()["rows"])

        return call

    window = "start=2024-05-01T00:00:00&end=2024-05-02T00:00:00"
    sql = {"query": "SELECT * FROM city.rides", "purpose": "masking tests"}
    return {
        "bbox": lambda role: s.read(world.who(role), "rides", "bbox", bbox=BOX),
        "within": lambda role: s.read(
            world.who(role),
            "rides",
            "within",
            area="POLYGON ((116.2 39.8, 116.5 39.8, 116.5 40, 116.2 40, 116.2 39.8))",
        ),
        "range": lambda role: s.read(
            world.who(role), "rides", "range", area=BOX, start=T0, end=T0 + timedelta(days=1)
        ),
        "track": lambda role: s.read(world.who(role), "rides", "track", object_id="v1"),
        "nearest": lambda role: s.read(world.who(role), "rides", "nearest", lon=116.31, lat=39.91, k=25),
        "sql": lambda role: s.sql(world.who(role), "SELECT * FROM city.rides"),
        "sql_join": lambda role: s.sql(
            world.who(role),
            "SELECT r.*, d.code FROM city.rides AS r JOIN city.place_district AS d "
            "ON ST_Intersects(d.geometry, r.geometry)",
        ).drop_columns(["geometry"]),
        "engine_sql": lambda role: cb.query.sql(
            "SELECT * FROM city.rides", scopes={"rides": s.scope_for(world.who(role), "rides")}
        ),
        "http_bbox": http("/api/v1/data/rides/bbox?bbox=116.2,39.8,116.5,40.0&limit=1000"),
        "http_bbox_window": http(f"/api/v1/data/rides/bbox?bbox=116.2,39.8,116.5,40.0&{window}&limit=1000"),
        "http_arrow": http(
            "/api/v1/data/rides/bbox?bbox=116.2,39.8,116.5,40.0&limit=1000",
            "application/vnd.apache.arrow.stream",
        ),
        "http_geojson": http(
            "/api/v1/data/rides/bbox?bbox=116.2,39.8,116.5,40.0&limit=1000", "application/geo+json"
        ),
        "http_track": http("/api/v1/data/rides/track?object=v1"),
        "http_sql": http("/api/v1/data/sql", body=sql),
        "http_sql_arrow": http("/api/v1/data/sql", "application/vnd.apache.arrow.stream", body=sql),
    }


READS = [
    "bbox",
    "within",
    "range",
    "track",
    "nearest",
    "sql",
    "sql_join",
    "engine_sql",
    "http_bbox",
    "http_bbox_window",
    "http_arrow",
    "http_geojson",
    "http_track",
    "http_sql",
    "http_sql_arrow",
]


def _check(t: pa.Table, rows: dict[tuple[str, int], dict[str, Any]], masked: bool) -> None:
    assert t.num_rows > 0
    assert not [c for c in t.column_names if c.endswith(SHADOW_SUFFIX)], t.column_names
    for r in t.to_pylist():
        row = rows[(r["_batch"], r["_line"])]
        for f, p in PERSONAL.items():
            assert r[f] == (PYTHON_MASKS[p](row[f]) if masked else row[f]), (f, r[f], row[f])
        assert r["born"] is None if masked else str(r["born"]) == str(row["born"])  # JSON: a string


@pytest.mark.parametrize("path", READS)
def test_every_read_path_masks_for_a_masked_grant(world: World, client: TestClient, path: str) -> None:
    _check(_reads(world, client)[path]("with_grant"), stored(world), masked=True)


@pytest.mark.parametrize("path", READS)
def test_the_provider_reads_raw_values_and_no_shadow_column(
    world: World, client: TestClient, path: str
) -> None:
    _check(_reads(world, client)[path]("provider"), stored(world), masked=False)


def test_masked_reads_take_the_shadow_columns(world: World) -> None:
    scope = world.share.scope_for(world.who("with_grant"), "rides")
    assert scope.shadows == {f: f + SHADOW_SUFFIX for f in PERSONAL}
    assert set(scope.masked) == {*PERSONAL, "born"}
    sql = world.cb.query.source("rides", scope).sql
    assert '"phone__masked" AS "phone"' in sql and "repeat(" not in sql
    assert '(CAST(NULL AS DATE)) AS "born"' in sql  # not text: no shadow, a constant


def test_a_field_left_unmasked_is_read_raw(world: World) -> None:
    s, prov = world.share, world.who("provider")
    r = s.request(world.who("without_grant"), "rides", purpose="phone raw")
    s.decide(prov, r.id, Decision(action="approve", unmasked=["phone"]))
    try:
        t = s.read(world.who("without_grant"), "rides", "bbox", bbox=BOX)
        rows = stored(world)
        for got in t.to_pylist():
            row = rows[(got["_batch"], got["_line"])]
            assert got["phone"] == row["phone"] and got["driver"] == PYTHON_MASKS[Personal.name](
                row["driver"]
            )
        assert "phone" not in s.scope_for(world.who("without_grant"), "rides").shadows
    finally:
        s.revoke(prov, r.id)


def test_a_shadow_column_cannot_be_asked_for(world: World, client: TestClient) -> None:
    s, q = world.share, world.cb.query
    with pytest.raises(InputError):  # not a declared field
        s.request(world.who("without_grant"), "rides", purpose="x", fields=["phone__masked"])
    with pytest.raises(InputError):  # not a column a scope may name
        q.bbox("rides", BOX, scope=ReadScope(fields=["phone__masked"]))
    with pytest.raises(InputError):  # not a column of the reader's view
        s.sql(world.who("with_grant"), "SELECT phone__masked FROM city.rides")
    resp = client.post(
        "/api/v1/data/sql",
        json={"query": "SELECT phone__masked FROM city.rides"},
        headers=world.headers("with_grant"),
    )
    assert resp.status_code == 400 and "phone__masked" in resp.text
    # Even the trusted engine's views show a dataset as its readers see it.
    assert not [c for c in q.sql("SELECT * FROM city.rides").column_names if c.endswith(SHADOW_SUFFIX)]


def test_a_scope_naming_another_column_as_shadow_is_refused(world: World) -> None:
    spec = world.cb.datasets["rides"]
    mask = mask_sql("driver", Personal.name)
    for forged in ("driver", "phone", "phone__masked", "nope__masked"):
        scope = ReadScope(fields=["driver", "_batch"], masked={"driver": mask}, shadows={"driver": forged})
        with pytest.raises(InputError):
            world.cb.query.bbox("rides", BOX, scope=scope)
    # A shadow is only named for a column masked by its field's own mask.
    assert grant_scope(spec, None).shadows["driver"] == "driver__masked"


# -- a table made before shadow columns ----------------------------------------------------------


def test_a_table_without_shadow_columns_is_masked_at_read_time(tmp_path: Path) -> None:
    cb = CityBase(tmp_path / "cb")
    cb.setup_city(demo_city())
    cb.declare(RIDES)
    cb.ingest("rides", ride_rows(40, seed=3, hour=0))
    cb.flush()
    for f in PERSONAL:  # as a table made before shadow columns existed
        cb.sql(f'ALTER TABLE lake."rides" DROP COLUMN "{f}{SHADOW_SUFFIX}"')
    cb.close()
    cb = CityBase(tmp_path / "cb")
    try:
        assert not [c for c in cb.lake.columns("rides") if c.endswith(SHADOW_SUFFIX)]
        cb.ingest("rides", ride_rows(40, seed=4, hour=3))  # still writable, without shadows
        cb.flush()
        spec = cb.datasets["rides"]
        scope = grant_scope(spec, None)
        assert scope.shadows  # the grant would take them: the engine sees the table has none
        sql = cb.query.source("rides", scope).sql
        assert "__masked" not in sql and "repeat(" in sql
        t = cb.query.bbox("rides", BOX, scope=scope)
        raw = {(r["_batch"], r["_line"]): r for r in cb.query.bbox("rides", BOX).to_pylist()}
        assert t.num_rows == len(raw) == 80
        _check(t, raw, masked=True)
    finally:
        cb.close()
