"""The shape of the code: short functions, and no import circles in the core."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 80


def test_no_function_is_longer_than_80_lines():
    long = []
    for root in ("textlab", "plugins"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > LIMIT:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)


def _core_imports() -> dict[str, set[str]]:
    """Module -> the core modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((REPO / "textlab").glob("*.py")):
        name = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textlab."):
                deps.add(node.module.split(".")[1])
        graph[name] = {d for d in deps if (REPO / "textlab" / f"{d}.py").exists() and d != name}
    return graph


def test_the_core_has_no_import_circles():
    graph = _core_imports()
    graph.pop("__init__", None)  # the package re-exports everything; no module imports it
    for deps in graph.values():
        deps.discard("__init__")
    seen: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph.get(node, ())):
            if seen.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]) if dep in stack else f"{node} -> {dep}")
            elif dep not in seen:
                visit(dep, stack + [dep])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_core_module_imports_the_package_itself():
    bad = [m for m, deps in _core_imports().items() if m != "__init__" and "__init__" in deps]
    assert not bad, bad
