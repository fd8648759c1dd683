"""The package's layers only point down: no import cycle anywhere in supervisor/, counting the
imports made inside functions too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "supervisor"

# Lower layers never import higher ones (docs/design.md, "Layers").
LAYERS = {
    "supervisor.errors": 0,
    "supervisor.durations": 0,
    "supervisor.clock": 0,
    "supervisor.sample": 0,
    "supervisor.policy": 0,
    "supervisor.core": 0,
    "supervisor.adapters": 1,
    "supervisor.sinks": 1,
    "supervisor.runtime": 2,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def layer(module: str) -> int | None:
    for prefix, level in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return level
    return None


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_layers_only_point_down() -> None:
    upward = [
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if (la := layer(a)) is not None and (lb := layer(b)) is not None and lb > la
    ]
    assert upward == []


def test_the_check_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_daemon_only_wires() -> None:
    """Its rules live in core/ and its parts in their own modules: it stays small."""
    lines = (PACKAGE / "runtime" / "daemon.py").read_text().count("\n")
    assert lines <= 300, f"runtime/daemon.py has {lines} lines"
