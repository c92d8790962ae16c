"""`citybase iot ...` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from citybase.cli.iot import iot_app
from test_iot_support import make_platform

runner = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> str:
    make_platform(tmp_path / "base", devices=1).close()
    return str(tmp_path / "base")


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["devices"],
        ["rules"],
        ["devices", "add"],
        ["devices", "import"],
        ["devices", "list"],
        ["devices", "remove"],
        ["rules", "import"],
        ["rules", "list"],
        ["rules", "remove"],
        ["state"],
        ["bridge"],
    ],
)
def test_every_command_has_help(cmd: list[str]) -> None:
    r = runner.invoke(iot_app, [*cmd, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output and "--help" in r.output


def test_an_invalid_device_is_refused_with_the_field_and_why(root: str) -> None:
    args = "devices add a/b --type air --department eco --dataset air --lon 116.45 --lat 99 --map pm25=pm25"
    r = runner.invoke(iot_app, [*args.split(), "--root", root])
    assert r.exit_code == 1
    assert "invalid device" in r.output and "\n  id: " in r.output and "\n  lat: " in r.output
    assert "pydantic" not in r.output  # the problems, not the library's dump


def test_devices_add_list_import_remove(root: str, tmp_path: Path) -> None:
    r = runner.invoke(
        iot_app,
        [
            "devices",
            "add",
            "aq-9",
            "--type",
            "air",
            "--department",
            "eco",
            "--dataset",
            "air",
            "--lon",
            "116.45",
            "--lat",
            "39.9",
            "--map",
            "pm25=pm25",
            "--map",
            "t=temp*0.1",
            "--root",
            root,
        ],
    )
    assert r.exit_code == 0, r.output
    f = tmp_path / "devices.yaml"
    f.write_text(
        "devices:\n  - {id: aq-7, type: air, department: eco, dataset: air, lon: 116.35, lat: 39.9,"
        " payload: {pm25: pm25}}\n"
    )
    assert runner.invoke(iot_app, ["devices", "import", str(f), "--root", root]).exit_code == 0
    r = runner.invoke(iot_app, ["devices", "list", "--root", root])
    assert r.exit_code == 0 and all(d in r.output for d in ("aq-0", "aq-7", "aq-9")) and "t->temp" in r.output
    r = runner.invoke(
        iot_app,
        [
            "devices",
            "add",
            "x-1",
            "--type",
            "air",
            "--department",
            "eco",
            "--dataset",
            "nope",
            "--lon",
            "1",
            "--lat",
            "1",
            "--map",
            "a=b",
            "--root",
            root,
        ],
    )
    assert r.exit_code == 1 and "no dataset 'nope'" in r.output
    assert runner.invoke(iot_app, ["devices", "remove", "aq-9", "--root", root]).exit_code == 0
    r = runner.invoke(iot_app, ["devices", "remove", "aq-9", "--root", root])
    assert r.exit_code == 1 and "no device 'aq-9'" in r.output


def test_rules_and_state(root: str, tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("rules:\n  - {id: hi, dataset: air, field: pm25, op: '>', value: 75}\n")
    assert runner.invoke(iot_app, ["rules", "import", str(f), "--root", root]).exit_code == 0
    r = runner.invoke(iot_app, ["rules", "list", "--root", root])
    assert r.exit_code == 0 and "hi" in r.output and "pm25" in r.output
    f.write_text("rules:\n  - {id: bad, dataset: air, field: status, op: '>', value: 1}\n")
    r = runner.invoke(iot_app, ["rules", "import", str(f), "--root", root])
    assert r.exit_code == 1 and "not a numeric field" in r.output
    assert runner.invoke(iot_app, ["rules", "remove", "hi", "--root", root]).exit_code == 0

    from citybase.platform import CityBase

    with CityBase(root) as cb:
        ts = pa.array([1_764_000_000_000_000]).cast(pa.timestamp("us", "UTC"))
        cb.ingest(
            "air", pa.table({"device": ["aq-0"], "ts": ts, "pm25": [7.0], "lon": [116.35], "lat": [39.9]})
        )
    r = runner.invoke(iot_app, ["state", "--json", "--root", root])
    assert r.exit_code == 0, r.output
    state = json.loads(r.output)
    assert (
        state["device"] == "aq-0" and state["district"] == "W" and json.loads(state["values"])["pm25"] == 7.0
    )


def test_docs_name_every_command_and_route() -> None:
    """docs/iot.md cannot drift: every CLI command and every HTTP route of the IoT box is in it."""
    from citybase.api.routes.iot import router

    doc = (Path(__file__).resolve().parents[1] / "docs" / "iot.md").read_text(encoding="utf-8")
    commands = [f"citybase iot {c.name}" for c in iot_app.registered_commands]
    for group in iot_app.registered_groups:
        assert group.typer_instance is not None
        commands += [f"citybase iot {group.name} {c.name}" for c in group.typer_instance.registered_commands]
    assert len(commands) == 9
    for c in commands:
        assert c in doc, f"docs/iot.md does not show `{c}`"
    paths = {getattr(r, "path", "") for r in router.routes}
    assert len(paths) == 5
    for p in paths:
        assert f"`{p}" in doc, f"docs/iot.md does not list {p}"
