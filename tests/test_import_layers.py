"""The package's modules import one way: no import cycle in ``hemoscan/``.

Every module is parsed with :mod:`ast`; imports at any depth count (a function-level import
still makes the two modules depend on each other, it only hides the cycle). Importing
``hemoscan.a.b`` counts as an edge to ``hemoscan.a.b`` only; the package ``__init__`` that
Python runs first is counted when it is imported by name (``from hemoscan.a import x`` where
``x`` is not a submodule).
"""

from __future__ import annotations

import ast
from pathlib import Path

import hemoscan

PACKAGE_ROOT = Path(hemoscan.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module name -> the ``hemoscan`` modules it imports, anywhere in its body."""
    paths = {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if child in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component of more than one module (Tarjan): (one cycle path, members)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(_cycle_path(graph, component), sorted(component)) for component in components]


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One closed path through a strongly connected component, from its first module back to it."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt not in previous:
                previous[nxt] = node
                frontier.append(nxt)
    raise AssertionError(f"no cycle through {sorted(component)}")


def test_the_graph_sees_function_level_imports():
    graph = _import_graph()
    assert "hemoscan.pipeline" in graph
    assert graph["hemoscan.scores"] >= {"hemoscan.scores.base", "hemoscan.scores.compute"}


def test_cycle_finder_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [(["a", "b", "c", "a"], ["a", "b", "c"])]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_hemoscan():
    cycles = _cycles(_import_graph())
    report = "\n".join(
        f"{' -> '.join(path)}   (modules in this cycle: {', '.join(members)})" for path, members in cycles
    )
    assert not cycles, f"{len(cycles)} import cycle(s) in hemoscan/:\n{report}"


#: The package's layers, lowest first, as the README's Development section draws them: a
#: module may import its own subpackage and the layers below its own, never one above or beside.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hemoscan", "errors", "choices", "datamodel", "hardware", "stats"),
    ("io", "labs", "models", "synthetic"),
    ("annotations", "examples", "qc", "scores", "visualize"),
    ("inference",),
    ("model_export", "scan_spec", "review"),
    ("engines", "report"),
    ("pipeline",),
    ("cli",),
)


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_goes_down_the_layers():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    graph = _import_graph()
    unplaced = sorted({_layer_of(m) for m in graph} - set(rank))
    assert not unplaced, f"place these in LAYERS (and the README): {unplaced}"
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if _layer_of(m) != _layer_of(t) and rank[_layer_of(t)] >= rank[_layer_of(m)]
    )
    assert not upward, "imports that do not go down the layers:\n" + "\n".join(upward)
