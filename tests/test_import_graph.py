"""The core's import graph: no cycles, and the core never imports plugins, tune or bench at import time.

``python tests/test_import_graph.py`` prints the graph (module -> what it imports at module level).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# import name prefix -> folder, as pyproject's [tool.setuptools.package-dir] maps them
PACKAGE_DIRS = {"gnn1000.registry": "registry", "gnn1000.plugins": "plugins", "gnn1000.tune": "tune",
                "gnn1000.bench": "bench", "gnn1000": "gnn1000"}
NOT_CORE = ("gnn1000.plugins", "gnn1000.tune", "gnn1000.bench", "gnn1000.configs")
# The edge, which nothing in the core imports: the CLI (it lists the benchmarks) and the public face
# of the solver plugins.
EDGE = {"gnn1000.cli", "gnn1000.__main__", "gnn1000.solvers"}


def modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if prefix != "gnn1000" or not name.startswith(tuple(p for p in PACKAGE_DIRS if p != "gnn1000")):
                found.setdefault(name, path)
    return found


def _top_level(tree: ast.Module):
    """Statements that run at import: the module body, into try/if blocks but not `if TYPE_CHECKING`."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Try, ast.If)):
            stack += [*node.body, *node.orelse, *getattr(node, "handlers", []), *getattr(node, "finalbody", [])]
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body
        else:
            yield node


def graph(deferred: bool = False) -> dict[str, set[str]]:
    """module -> the gnn1000 modules it imports at import time (with ``deferred``: also inside functions)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        tree = ast.parse(path.read_text())
        for node in (ast.walk(tree) if deferred else _top_level(tree)):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def is_core(name: str) -> bool:
    return not name.startswith(NOT_CORE)


def test_no_import_cycles_even_through_imports_inside_functions():
    assert cycles(graph(deferred=True)) == []


def test_the_core_imports_no_plugins_tune_or_bench_at_import_time():
    leaks = {name: sorted(t for t in targets if not is_core(t))
             for name, targets in graph().items() if is_core(name) and name not in EDGE}
    assert {name: t for name, t in leaks.items() if t} == {}


@pytest.mark.parametrize("module", sorted(name for name in modules() if is_core(name) and name != "gnn1000.__main__"))
def test_each_core_module_imports_alone_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


if __name__ == "__main__":
    deferred = "--deferred" in sys.argv
    for name, targets in sorted(graph(deferred).items()):
        if is_core(name):
            print(f"{name} -> {', '.join(sorted(targets)) or '(nothing of gnn1000)'}")
    print("cycles:", cycles(graph(deferred)) or "none")
