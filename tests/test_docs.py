"""The README cannot drift: its Python tour runs, and every command it shows exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


QUERIES = README.parent / "docs" / "queries.md"


def blocks(lang: str, page: Path = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize(("page", "least"), [(README, 10), (QUERIES, 8)], ids=["README", "queries"])
def test_every_command_shown_exists(page: Path, least: int) -> None:
    runner = CliRunner()
    seen = 0
    for block in blocks("sh", page):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if not line.startswith("citybase "):
                continue
            words = [w for w in shlex.split(line)[1:] if not w.startswith("-")]
            if not words:  # `citybase --help`
                continue
            # The command path is the leading words that are commands (`query nearest`, `load`).
            path: list[str] = []
            for w in words[:2]:
                if runner.invoke(app, [*path, w, "--help"]).exit_code == 0:
                    path.append(w)
                else:
                    break
            assert path, f"{page.name} shows an unknown command: {line}"
            seen += 1
    assert seen >= least


@pytest.mark.parametrize("page", [README, QUERIES], ids=["README", "queries"])
def test_python_examples_run(demo_city: tuple[Path, Path], page: Path) -> None:
    base, source = demo_city
    (code,) = blocks("python", page)
    code = code.replace("demo-city/base", str(base)).replace("demo-city/source", str(source))
    exec(compile(code, str(page), "exec"), {})


DOCS = README.parent / "docs"


def test_every_server_setting_is_documented() -> None:
    from citybase.api import Settings

    text = (DOCS / "server.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/server.md: {missing}"


def test_every_endpoint_is_documented(tmp_path: Path) -> None:
    from citybase import CityBase
    from citybase.api import create_app

    with CityBase.open(tmp_path) as cb:
        paths = create_app(cb, background=False).openapi()["paths"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    missing = [p for p in paths if p not in text]
    assert not missing, f"endpoints not in any docs/*.md: {missing}"
