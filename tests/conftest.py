from __future__ import annotations

from pathlib import Path

import pytest

from citybase.testing import shared_data


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data; tests that need real third-party data skip where it is absent."""
    p = shared_data()
    if p is None:
        pytest.skip("../shared/data is absent: this test needs the real third-party data")
    return p


@pytest.fixture(scope="session")
def demo_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny sample city, generated and loaded once: (platform root, source folder)."""
    from typer.testing import CliRunner

    from citybase.cli.main import app

    d = tmp_path_factory.mktemp("demo")
    base, source = d / "base", d / "source"
    args = ["demo", "--root", str(base), "--source", str(source), "--scale", "tiny", "--no-live"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return base, source
