"""The layers hold: each folder imports only folders of lower rank, Prefect stays in flows/, no cycle.

Every import counts, at module level, inside functions and under TYPE_CHECKING alike: a lazy
import is still a dependency. `from package import submodule` depends on the submodule only. A
module named in a string ("radsim.flows.torchrun") counts as an import too: a module run by
name, preloaded by name or imported with importlib is a dependency that no import statement shows.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("data_contracts", "evaluation", "flows", "imaging", "model", "nlp", "synthetic", "warehouse")
# DESIGN §2: a folder imports only folders of a lower rank (never one of its own rank)
RANKS = {"data_contracts": 0, "warehouse": 1, "nlp": 2, "imaging": 2, "synthetic": 2, "evaluation": 3, "model": 4,
         "flows": 5}
_MODULE_STRING = re.compile(r"radsim(\.\w+)+")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("radsim", *parts))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    return _imports_of_code(name, path.read_text(encoding="utf-8"), known, path.name == "__init__.py")


def _imports_of_code(name: str, code: str, known: set[str], is_package: bool = False) -> set[str]:
    """Every module `name` imports: radsim modules resolved, third-party names as written, strings naming modules."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            out.add(node.value)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            out.update(submodules or {base})
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _outside_flows(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: deps for m, deps in graph.items() if not m.startswith("radsim.flows")}


def test_the_walk_sees_the_tree(graph):
    """Guards the tests below against vacuous passes: the graph holds the modules and their imports."""
    assert {"radsim.flows.cli", "radsim.model.train", "radsim.nlp.runner", "radsim.warehouse.published"} <= set(graph)
    assert "prefect" in {d.split(".")[0] for d in graph["radsim.flows.pipeline"]}
    assert "radsim.nlp.chunks" in graph["radsim.nlp.runner"]


def test_prefect_is_imported_only_in_flows(graph):
    offenders = {m: sorted(d for d in deps if d.split(".")[0] == "prefect" or d.startswith("prefect_"))
                 for m, deps in _outside_flows(graph).items()}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_nothing_outside_flows_imports_flows(graph):
    offenders = {
        m: sorted(d for d in deps if d.startswith("radsim.flows")) for m, deps in _outside_flows(graph).items()
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root] & graph.keys())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child] & graph.keys()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "radsim" and parts[1] in RANKS else None


def _upward(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """module -> the radsim modules it imports from a folder of its own or a higher rank (another folder)."""
    out: dict[str, list[str]] = {}
    for module, deps in graph.items():
        home = _folder(module)
        bad = sorted(d for d in deps if _folder(d) not in (None, home) and RANKS[_folder(d)] >= RANKS[home])
        if bad:
            out[module] = bad
    return out


def test_every_folder_has_a_rank():
    assert set(RANKS) == set(SOURCE_DIRS)


def test_folders_import_only_lower_ranks(graph):
    assert _upward(graph) == {}


def test_an_upward_import_or_a_module_named_in_a_string_is_caught():
    known = {"radsim.flows.torchrun", "radsim.model.data"}
    code = 'import radsim.model.data\nENTRY = "radsim.flows.torchrun"\nNOT_A_MODULE = "radsim is great"\n'
    deps = _imports_of_code("radsim.imaging.shards", code, known)
    assert {"radsim.model.data", "radsim.flows.torchrun"} <= deps and "radsim is great" not in deps
    assert _upward({"radsim.imaging.shards": deps}) == {"radsim.imaging.shards": ["radsim.flows.torchrun",
                                                                                 "radsim.model.data"]}
    assert _upward({"radsim.model.data": {"radsim.imaging.reader", "radsim.model.encoders"}}) == {}
    assert _upward({"radsim.nlp.runner": {"radsim.imaging.reader"}}) != {}  # same rank, another folder


def test_no_import_cycle(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
