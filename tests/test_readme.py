"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    test_command = ci[-1].strip()
    assert "pytest" in test_command
    assert test_command in _readme_commands()


def test_readme_python_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every Python block of the README runs as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert '"sub": ' in capsys.readouterr().out.replace("'", '"')


def test_readme_first_commands_are_demo_then_tests() -> None:
    commands = _readme_commands()
    assert commands[0].endswith("python -m usersession demo")
    assert commands[1].endswith("python -m pytest")
