"""Every rule in docs/guarantees.md has a test that names it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_documented_rule_has_a_test_naming_it() -> None:
    page = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    rules = sorted(set(re.findall(r"^\| ([A-Z][0-9]+) \|", page, flags=re.MULTILINE)))
    assert len(rules) >= 20
    tests = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "tests").glob("test_*.py")
        if path.name != Path(__file__).name
    )
    missing = [
        rule
        for rule in rules
        if not re.search(rf"(\b{rule}\b|_{rule.lower()}_)", tests)
    ]
    assert missing == []
