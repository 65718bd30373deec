"""The house rules of the library's layout, read from the code's own imports: no import cycle, nothing in
the library imports the orchestration (flows/) or the application (fti/) above it, or an example domain,
and only the engine modules import their engine (duckdb, pyspark)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "models_ml"
ENGINE_MODULES = {"models_ml.offline.duckdb_store"}
SPARK_MODULES = {"models_ml.offline.spark_store"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / LIBRARY).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    raw = {name: _imports(name, path) for name, path in modules.items()}
    return {name: {m for m in imported if m in modules and m != name} for name, imported in raw.items()}, raw


def _is_package_face(cycle: list[str]) -> bool:
    """A package's __init__ re-exporting its own children is not a design cycle."""
    top = min(cycle, key=len)
    return all(m.startswith(top) for m in cycle)


def test_no_import_cycles():
    graph, _ = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 and not _is_package_face(component):
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def _importers(prefixes: tuple[str, ...]) -> list[str]:
    _, raw = _graph()
    return sorted(name for name, imported in raw.items()
                  if any(m == p or m.startswith(p + ".") for m in imported for p in prefixes))


def test_the_library_never_imports_what_sits_above_it():
    assert _importers(("flows", "fti", "examples")) == []


def test_only_the_engine_module_imports_duckdb():
    assert set(_importers(("duckdb",))) <= ENGINE_MODULES


def test_only_the_spark_store_imports_pyspark():
    assert set(_importers(("pyspark",))) <= SPARK_MODULES
