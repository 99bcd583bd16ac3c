"""The package's layout is its architecture: the core (io, archs, models, plan, engine,
executors, run, train, imaging) under the commands built on it (vidsr/commands/), the
command line over both. These tests read every import, deferred and type-only ones
included, so an arrow that runs up or a circle fails here, not in a reader's head."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vidsr"
FRONT = {"vidsr.cli", "vidsr.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each vidsr module and the vidsr modules it imports (a package's name stands for its
    ``__init__``; ``from pkg import mod`` counts as importing ``pkg.mod``)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def command_of(module: str) -> str | None:
    """``vidsr.commands.batch.runner`` -> ``batch``; None for the core and the front."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "commands" else None


def test_only_the_command_line_imports_the_command_line():
    graph = import_graph()
    offenders = sorted(m for m, deps in graph.items() if "vidsr.cli" in deps and m not in FRONT)
    assert offenders == []


def test_the_core_never_imports_a_command():
    graph = import_graph()
    upward = sorted(
        f"{m} -> {d}" for m, deps in graph.items() for d in deps
        if m not in FRONT and command_of(m) is None and not m.startswith("vidsr.commands")
        and d.startswith("vidsr.commands")
    )
    assert upward == []


def test_commands_never_import_each_other():
    graph = import_graph()
    sideways = sorted(
        f"{m} -> {d}" for m, deps in graph.items() for d in deps
        if command_of(m) and command_of(d) and command_of(m) != command_of(d)
    )
    assert sideways == []


def test_no_import_circles():
    graph = import_graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    # A package's __init__ re-exporting its own modules is not a circle of logic.
    real = [c for c in circles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert real == []
