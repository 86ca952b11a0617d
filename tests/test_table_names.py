"""One name per table: every file name radsim reads or writes is a constant of radsim.warehouse.layout.

The names are read from that module (its `*_FILE` constants) and from radsim.data_contracts.ids
(the Parquet metadata key of a key_id); a string literal equal to one of them, or ending in
`/<name>`, anywhere else in the source or the benchmarks fails this test. Docstrings may name
files: they document, they do not open anything.
"""
from __future__ import annotations

import ast
from pathlib import Path

from radsim.data_contracts import ids
from radsim.warehouse import layout

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("data_contracts", "evaluation", "flows", "imaging", "model", "nlp", "synthetic", "warehouse", "bench")
DECLARED_IN = {ROOT / "warehouse" / "layout.py", ROOT / "data_contracts" / "ids.py"}


def _names() -> set[str]:
    files = {v for k, v in vars(layout).items() if k.endswith("_FILE") and isinstance(v, str)}
    return files | {ids.META_KEY_ID}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            out.add(id(body[0].value))
    return out


def literal_copies(code: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of each string literal in `code` that spells a declared name."""
    tree = ast.parse(code)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in skip and isinstance(node.value, (str, bytes)):
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if any(text == n or text.endswith("/" + n) for n in names):
                found.append((node.lineno, text))
    return found


def test_the_layout_declares_the_table_names():
    names = _names()
    assert {"manifest.parquet", "labels.parquet", "exams.parquet", "quarantine.parquet", "radsim.key_id"} <= names


def test_no_file_name_is_written_out_twice():
    names = _names()
    copies = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path not in DECLARED_IN:
                found = literal_copies(path.read_text(encoding="utf-8"), names)
                if found:
                    copies[str(path.relative_to(ROOT))] = found
    assert copies == {}


def test_a_literal_copy_is_caught_and_a_docstring_is_not():
    code = (
        '"""Writes manifest.parquet."""\n'
        'PATH = "shards/manifest.parquet"\nKEY = b"radsim.key_id"\nOTHER = "notes.txt"\n'
    )
    assert literal_copies(code, _names()) == [(2, "shards/manifest.parquet"), (3, "radsim.key_id")]
