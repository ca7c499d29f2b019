"""The folder tree is the architecture: no import cycle, and no module imports a layer above its own.

Read from the source (``ast``), every import counted, function-local ones too. The layers,
bottom to top, are the README's Layout table.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from .conftest import ROOT

#: Bottom to top; a module belongs to the longest prefix listed.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("fleet", "fleet.errors", "fleet.constants", "fleet.settings", "fleet.logs")),
    ("store", ("fleet.store",)),
    ("definitions", ("fleet.definitions",)),
    ("ledger and board", ("fleet.ledger", "fleet.board")),
    # MCP identity: agent tokens and the tools check (what external agents use), and the
    # record of calls whose token did not verify (what the read side counts).
    ("mcp identity", ("fleet.mcp.tokens", "fleet.mcp.client", "fleet.mcp.rejections")),
    ("agents", ("fleet.agents",)),
    ("app", ("fleet.app",)),
    ("runtime", ("fleet.runtime",)),
    ("read side", ("fleet.queries", "fleet.audit")),
    ("operations", ("fleet.ops",)),
    ("interfaces", ("fleet.mcp", "fleet.web", "fleet.cli")),
    ("plug-ins", ("fleet.defaults",)),
    ("entry points", ("fleet.celery", "tasks", "beat_schedule")),
]


def modules() -> dict[str, Path]:
    found = {"beat_schedule": ROOT / "beat_schedule.py"}
    for base in ("fleet", "tasks"):
        for path in (ROOT / base).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``name`` imports (``from pkg import module`` counts the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def layer_of(name: str) -> int:
    best, level = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    assert level >= 0, f"{name} is in no layer: add it to LAYERS and the README's Layout"
    return level


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []
