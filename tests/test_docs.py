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


def test_readme_python_tour_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    base, source = tmp_path / "base", tmp_path / "source"
    r = runner.invoke(app, ["demo", "--root", str(base), "--source", str(source), "--scale", "tiny"])
    assert r.exit_code == 0, r.output
    (code,) = blocks("python")
    code = code.replace("demo-city/base", str(base)).replace("demo-city/source", str(source))
    exec(compile(code, str(README), "exec"), {})
