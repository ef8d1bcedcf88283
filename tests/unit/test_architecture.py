"""The import graph of the project's own modules (lazy imports included): the kernel
``shop`` knows no module, no two files import each other, directly or round about
(ARCHITECTURE.md, rule 9), and every arrow runs one way: the write side (``catalog``,
``orders``, ``shipping``) knows neither the read side (``projections``) nor the back
office above both (``backoffice``), and the read side does not know the back office."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shop", "catalog", "orders", "shipping", "projections", "backoffice", "demo")
MODULES = ("catalog", "orders", "shipping", "projections", "backoffice", "demo")
WRITE_SIDE = ("catalog", "orders", "shipping")
# package -> the packages it must never import
NEVER = {
    **{package: ("projections", "backoffice", "demo") for package in WRITE_SIDE},
    "projections": ("backoffice", "demo"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                files[module_name(path)] = path
    return files


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (in functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            # The longest known module that the target names (a.b.c -> a.b).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = import_graph()


def test_the_graph_sees_lazy_imports():
    # A guard on the reader itself: an import inside a function counts.
    assert "shop.eventstore" in GRAPH["catalog.apps"]


def test_no_import_cycle_lazy_imports_included():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.split(".")[0] == "shop"))
def test_the_kernel_imports_no_module(name):
    assert not {m for m in GRAPH[name] if m.split(".")[0] in MODULES}


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.split(".")[0] in NEVER))
def test_imports_run_one_way(name):
    forbidden = NEVER[name.split(".")[0]]
    assert not {m for m in GRAPH[name] if m.split(".")[0] in forbidden}


def test_the_back_office_is_one_package():
    # No admin module is left in a write or read module: their pages live in backoffice/.
    for package in (*WRITE_SIDE, "projections", "shop"):
        assert not list((ROOT / package).rglob("admin.py")), package


def test_one_retry_tool_tenacity():
    """``eventsourcing.utils.retry`` is the library's own; ours is tenacity (issue 24)."""
    users = []
    for name, path in source_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            imported = (isinstance(node, ast.ImportFrom) and node.module == "eventsourcing.utils"
                        and any(alias.name == "retry" for alias in node.names))
            called = (isinstance(node, ast.Attribute) and node.attr == "retry"
                      and isinstance(node.value, ast.Attribute) and node.value.attr == "utils")
            if imported or called:
                users.append(name)
    assert users == []
