"""`citybase fusion …`: every command has help; resolve, profile and review from the shell."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from citybase.cli.fusion import fusion_app
from citybase.fusion import sample
from citybase.sim import SimScale, simulate

runner = CliRunner()


def _commands(app: typer.Typer, prefix: list[str]) -> list[list[str]]:
    out = [prefix]
    for c in app.registered_commands:
        out.append([*prefix, c.name or (c.callback.__name__ if c.callback else "")])
    for g in app.registered_groups:
        assert g.typer_instance is not None and g.name is not None
        out += _commands(g.typer_instance, [*prefix, g.name])
    return out


@pytest.mark.parametrize("cmd", _commands(fusion_app, []), ids=lambda c: " ".join(c) or "fusion")
def test_help_everywhere(cmd: list[str]) -> None:
    r = runner.invoke(fusion_app, [*cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output and len(r.output.splitlines()) > 3


def test_resolve_profile_and_review(tmp_path: Path, shared: Path) -> None:
    city = tmp_path / "city"
    simulate(city, scale=SimScale.tiny())
    people = sample.people(city)
    src = tmp_path / "people.parquet"
    pq.write_table(people, src)
    rules = tmp_path / "person.yaml"
    rules.write_text(sample.PERSON_RULES.to_yaml(), encoding="utf-8")
    store = tmp_path / "store"
    r = runner.invoke(
        fusion_app,
        [
            "resolve", str(src), "--rules", str(rules), "--store", str(store),
            "--divisions", str(shared / "geometries" / "china_admin"),
            "--reference", str(city / "data" / "housing_buildings.parquet"), "--default", "11",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "person entities" in r.output
    golden = pq.read_table(store / "entities" / "person" / "golden.parquet")
    assert 0 < golden.num_rows < people.num_rows
    eid = golden["entity_id"][0].as_py()
    r = runner.invoke(fusion_app, ["entity", eid, "--store", str(store)])
    assert r.exit_code == 0, r.output
    assert "provenance" in r.output and "records" in r.output
    r = runner.invoke(fusion_app, ["entity", "P-nope", "--store", str(store)])
    assert r.exit_code == 1 and "no entity" in r.output
    r = runner.invoke(fusion_app, ["review", "list", "--store", str(store)])
    assert r.exit_code == 0 and "pending review" in r.output
    r = runner.invoke(fusion_app, ["review", "accept", "a|1", "b|2", "--store", str(store)])
    assert r.exit_code == 1 and "no review pair" in r.output
