"""The package's shape: no class grows into the hub every call returns to (at most 400 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import aepca

MAX_CLASS_LINES = 400


def test_no_class_is_longer_than_400_lines():
    package = Path(aepca.__file__).parent
    long = {
        f"{path.relative_to(package)}:{node.name}": node.end_lineno - node.lineno + 1
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    }
    assert not long, f"classes over {MAX_CLASS_LINES} lines (split them): {long}"
