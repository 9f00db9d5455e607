"""The import structure: layers point one way (server → schema → resolvers → transport →
slurm_graphql) and no
module imports itself back through another, except the schema's types, which name each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each may import only those after it; slurm_graphql, beneath them all, imports none of them.
LAYERS = ("server", "schema", "resolvers", "transport", "slurm_graphql")


def _modules() -> dict[str, Path]:
    found = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[str]:
    """Names imported when the module runs: imports under `if TYPE_CHECKING:` are for readers."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (name for child in node.orelse for name in _imports(ast.Module([child], [])))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        else:
            yield from _imports(node)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {target for target in _imports(ast.parse(path.read_text())) if target in modules}
        - {name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_no_module_imports_a_layer_above_its_own() -> None:
    """transport knows no resolver, resolvers know no schema, the schema knows no server."""
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if _layer(target) < _layer(source)
    )
    assert upward == []


def test_no_import_circles_outside_the_schema_type_graph() -> None:
    """Circles only where GraphQL types refer to each other (Job.partition, Partition.jobs, ...)."""
    circles = [
        sorted(component)
        for component in _cycles(_graph())
        if not all(module.startswith("schema.") for module in component)
    ]
    assert circles == []


def test_the_two_named_circles_are_gone() -> None:
    """transport.registry and transport.ssm, schema.node and schema.job: neither imports back."""
    graph = _graph()
    assert "transport.registry" not in graph["transport.ssm"]
    assert "schema.job.to_datetime" not in {
        target for target in _imports(ast.parse((ROOT / "schema/node.py").read_text()))
    }


def test_only_server_start_up_sets_the_garbage_collector() -> None:
    """A process-wide switch belongs to the process's owner: the collector's policy is set once,
    in server/gc_tuning.py, never toggled by a parser or the poller."""
    touching = sorted(
        name
        for name, path in _modules().items()
        if "gc" in _imports(ast.parse(path.read_text())) and name != "server.gc_tuning"
    )
    assert touching == []
