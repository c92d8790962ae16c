"""Every query of the engine is reachable from the shell, and prints what the Python API returns."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase import CityBase
from citybase.cli.main import app

BOX = "POLYGON((116.2 39.8, 116.6 39.8, 116.6 40.1, 116.2 40.1, 116.2 39.8))"


@pytest.fixture(scope="module")
def cli(demo_city: tuple[Path, Path]) -> tuple[CliRunner, Path]:
    return CliRunner(env={"COLUMNS": "200"}), demo_city[0]


def run(cli: tuple[CliRunner, Path], *args: str) -> str:
    runner, root = cli
    r = runner.invoke(app, [*args, "--root", str(root)])
    assert r.exit_code == 0, r.output
    return r.output


def test_h3_bins_from_the_shell_match_the_api(cli: tuple[CliRunner, Path]) -> None:
    with CityBase.open(cli[1]) as cb:
        t = cb.query.h3_bins("vehicle_positions", 7)
    out = run(cli, "query", "h3", "vehicle_positions", "--resolution", "7", "--limit", "500")
    top = t.sort_by([("count", "descending")]).to_pylist()[0]
    assert (top["cell"] in out and f"({t.num_rows} in all)" in out) or t.num_rows <= 500


def test_grid_trajectories_nearest_join_and_within(cli: tuple[CliRunner, Path]) -> None:
    with CityBase.open(cli[1]) as cb:
        stats, _ = cb.query.trajectories("vehicle_positions")
        grid = cb.query.grid_bins("hotline_events", every="1d")
        joined = cb.query.nearest_join("hotline_events", "vehicle_positions", k=1)
        inside = cb.query.within("hotline_events", BOX)
    out = run(cli, "query", "trajectories", "vehicle_positions", "--limit", "1000")
    assert all(v in out for v in stats.column("vehicle_id").to_pylist()[:5])
    out = run(cli, "query", "grid", "hotline_events", "--every", "1d", "--limit", "5")
    assert f"({grid.num_rows} in all)" in out
    out = run(cli, "query", "nearest-join", "hotline_events", "vehicle_positions", "--limit", "3")
    assert "distance_m" in out and joined.column("object_vehicle_id")[0].as_py() in out
    out = run(cli, "query", "within", "hotline_events", BOX, "--limit", "1")
    assert f"({inside.num_rows} in all)" in out


def test_a_bad_argument_is_a_clear_error(cli: tuple[CliRunner, Path]) -> None:
    runner, root = cli
    r = runner.invoke(app, ["query", "h3", "vehicle_positions", "--resolution", "15", "--root", str(root)])
    assert r.exit_code != 0 and "resolution must be" in str(r.exception)


def test_tables_fit_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns a table shows the columns that fit, each short value on one line, names the
    others, wraps a long text in what is left, and prints values as text, never as markup."""
    import io
    from datetime import datetime

    import pyarrow as pa
    from rich.console import Console

    from citybase.cli import main

    out = io.StringIO()
    monkeypatch.setattr(main, "console", Console(file=out, width=80, color_system=None))
    t = pa.table(
        {
            "vehicle_id": ["TX00134", "[bold]BUS1[/bold]"],
            "ts": [datetime(2025, 3, 3, 0, 43, 49, 891000), datetime(2025, 3, 3, 1, 0)],
            "reason": ["coordinates outside the world (lon -180..180, lat -90..90)", "ok"],
            "plate": ["京Y·25240", "京L·40227"],
            "_line": [1, 2],
        }
    )
    main.print_table(t, "fit")
    text = out.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    # Short values whole on one line; the timestamp to the millisecond; markup shown as text.
    assert any("TX00134" in line and "2025-03-03 00:43:49.891" in line for line in lines)
    assert "2025-03-03 01:00:00 " in text and "[bold]BUS1[/bold]" in text
    # The long reason wraps in the space left; the column after it is named, provenance is not.
    assert "coordinates outside" in text and "lat -90..90)" in text
    assert "+1 columns: plate" in text and "_line" not in text
    # Columns chosen in SQL are all shown, provenance included.
    main.print_table(t.select(["_line", "vehicle_id"]), everything=True)
    assert "_line" in out.getvalue()[len(text) :]
