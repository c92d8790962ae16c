"""docs/ledger.md cannot drift from the CLI, and the ledger stays a leaf of the platform."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import typer
from typer.testing import CliRunner

from citybase.cli.ledger import ledger_app, witness

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ledger.md"
runner = CliRunner()


def _commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("citybase "):
                out.append(shlex.split(line)[1:])
    return out


def test_every_ledger_command_and_option_in_the_docs_exists() -> None:
    witness_app = typer.Typer()
    witness_app.command()(witness)
    seen = 0
    for words in _commands():
        if words[0] == "ledger":
            app, rest = ledger_app, words[1:]
            help_text = runner.invoke(app, [rest[0], "--help"], terminal_width=200).output
        else:
            assert words[0] == "witness", words
            app, rest = witness_app, words[1:]
            help_text = runner.invoke(app, ["--help"], terminal_width=200).output
        assert "Usage" in help_text, words
        for w in rest:
            if w.startswith("--"):
                assert w in help_text, f"docs/ledger.md shows {w}, which `{' '.join(words[:2])}` lacks"
        seen += 1
    assert seen >= 8


def test_the_ledger_imports_nothing_of_ours_but_errors() -> None:
    for path in (ROOT / "src" / "citybase" / "ledger").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("citybase"):
                assert node.module == "citybase.errors" or node.module.startswith("citybase.ledger"), (
                    f"{path.name} imports {node.module}"
                )
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("citybase") for a in node.names), path.name


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    attempted = 0
    for name in ("merkle", "tiles", "checkpoint", "entry", "log"):
        mod = importlib.import_module(f"citybase.ledger.{name}")
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, f"citybase.ledger.{name}: {res.failed} docstring examples fail"
        attempted += res.attempted
    assert attempted >= 10


def test_the_python_example_in_the_docs_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    code = blocks[0].replace('".citybase/ledger"', repr(str(tmp_path / "ledger")))
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert scope["i"] == 0 and scope["cp"].size == 4  # type: ignore[attr-defined]
    assert scope["bundle"]["index"] == 0  # type: ignore[index]
