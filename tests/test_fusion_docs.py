"""docs/fusion.md cannot drift: its Python examples run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "fusion.md"


def test_fusion_doc_examples_run(shared: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    ns: dict[str, object] = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{DOC.name}[python block {i + 1}]", "exec"), ns)
        except Exception as e:  # pragma: no cover - the message names the block
            pytest.fail(f"docs/fusion.md python block {i + 1} failed: {type(e).__name__}: {e}")


def test_fusion_doc_names_every_cli_command() -> None:
    from citybase.cli.fusion import fusion_app, review_app

    text = DOC.read_text(encoding="utf-8")
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in fusion_app.registered_commands]
    for name in names:
        assert f"citybase fusion {name}" in text, name
    for c in review_app.registered_commands:
        name = c.name or (c.callback.__name__ if c.callback else "")
        assert f"citybase fusion review {name}" in text, name
