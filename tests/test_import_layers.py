"""Dependencies between modelyard's parts point one way: no import cycle between them.

A part is a subpackage (``modelyard.gateway``) or a top-level module
(``modelyard.catalog_ids``). Every import counts, also one inside a function: a
cycle there is still a cycle, only a later one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import modelyard
import modelyard_client

ROOT = Path(modelyard.__file__).parent


def _part(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def import_graph() -> dict[str, dict[str, set[str]]]:
    """part -> part it imports -> the files (relative to the package) that do."""
    parts = {_part(p) for p in ROOT.glob("*") if p.suffix == ".py" or p.is_dir()}
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _part(path)
        for name in _imported(ast.parse(path.read_text(), str(path))):
            top, _, rest = name.partition(".")
            target = rest.split(".", 1)[0]
            if top == "modelyard" and target in parts and target != source:
                where = str(path.relative_to(ROOT))
                graph.setdefault(source, {}).setdefault(target, set()).add(where)
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycle_between_parts() -> None:
    graph = import_graph()
    report = [
        f"{a} -> {b}: {', '.join(sorted(graph[a][b]))}"
        for group in cycles(graph)
        for a in group
        for b in sorted(graph.get(a, {}))
        if b in group
    ]
    assert report == []


def test_the_check_finds_a_cycle() -> None:
    graph = {"a": {"b": {"a.py"}}, "b": {"c": {"b.py"}}, "c": {"a": {"c.py"}}, "d": {"a": {"d.py"}}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_only_the_assembly_imports_servicers() -> None:
    """A servicer is a gRPC adapter over a domain object; domain code never needs one."""
    users = [
        str(path.relative_to(ROOT))
        for path in sorted(ROOT.rglob("*.py"))
        if _part(path) != "assembly"
        and any(
            name.startswith("modelyard.") and name.endswith(".servicer")
            for name in _imported(ast.parse(path.read_text(), str(path)))
        )
    ]
    assert users == []


def test_the_client_package_imports_nothing_of_the_server() -> None:
    """The server depends on `modelyard_client`, never the reverse: the client installs on
    its own (tests/clients/test_python_client.py runs it so)."""
    client = Path(modelyard_client.__file__).parent
    users = [
        str(path.relative_to(client))
        for path in sorted(client.rglob("*.py"))
        if any(
            name == "modelyard" or name.startswith("modelyard.")
            for name in _imported(ast.parse(path.read_text(), str(path)))
        )
    ]
    assert users == []
