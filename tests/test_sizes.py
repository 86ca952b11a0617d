"""The source stays readable in one sitting: no library module over 400 lines, no function over 60.

The limits are the restructure's (issue 25): past them a module has two jobs or a function
does several steps that deserve names. Tests and benchmarks are not held to them.
"""
from __future__ import annotations

import ast
from pathlib import Path

from test_layering import ROOT, SOURCE_DIRS

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _long_functions(code: str) -> list[tuple[str, int]]:
    """(name, lines) of each function or method longer than MAX_FUNCTION_LINES, decorators excluded."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(code))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def _sources() -> list[Path]:
    return [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]


def test_no_library_module_is_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in _sources()
            if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_MODULE_LINES}
    assert long == {}


def test_no_library_function_is_over_the_limit():
    long = {f"{p.relative_to(ROOT)}:{name}": n for p in _sources()
            for name, n in _long_functions(p.read_text(encoding="utf-8"))}
    assert long == {}


def test_the_function_check_sees_a_long_method_and_passes_a_short_one():
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    code = f"class C:\n    def long(self):\n{body}\n\n    def short(self):\n        return 1\n"
    assert _long_functions(code) == [("long", MAX_FUNCTION_LINES + 1)]
