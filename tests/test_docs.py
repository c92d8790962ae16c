"""The README cannot drift: its Python tour runs, and every command it shows exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from citybase.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_every_command_in_the_readme_exists() -> None:
    runner = CliRunner()
    seen = 0
    for block in blocks("sh"):
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
            assert path, f"README shows an unknown command: {line}"
            seen += 1
    assert seen >= 10


def test_readme_python_tour_runs(demo_city: tuple[Path, Path]) -> None:
    base, source = demo_city
    (code,) = blocks("python")
    code = code.replace("demo-city/base", str(base)).replace("demo-city/source", str(source))
    exec(compile(code, str(README), "exec"), {})


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
