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


def _imports(tree: ast.AST) -> Iterator[str]:
    """Every module the code names, wherever it does: at the top, inside a function, under
    `if TYPE_CHECKING:` (a reader follows those too, and a circle closed through one is still a
    circle to understand), or as `strawberry.lazy("module")`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module}: name it whole"
            assert node.module is not None
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "lazy"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value)


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


# The one circle allowed, exactly as it stands. GraphQL's types refer to each other (Job.partition
# and Partition.jobs, Job.nodes and ComputeNode.jobs, JobConnection.nodes), and Python has no way
# for classes in separate modules to name each other without each module naming the other: the
# schema defers the back references with strawberry.lazy and imports inside the resolvers, so
# nothing is half-imported at run time, but the modules still form a circle. The alternative, the
# four types in one module of ~550 lines, would trade one file per type for an import graph
# without it. A module joining this circle, or any other circle, fails the test below.
ALLOWED_CIRCLES = (
    frozenset({"schema.connection", "schema.job", "schema.node", "schema.partition"}),
)


def test_no_import_circles_but_the_schema_types() -> None:
    """No module imports itself back through others, TYPE_CHECKING imports included, except
    the schema's types, which name each other as GraphQL's do (ALLOWED_CIRCLES)."""
    circles = sorted(sorted(component) for component in _cycles(_graph()))
    assert circles == sorted(sorted(circle) for circle in ALLOWED_CIRCLES)


def test_circles_are_found_through_type_checking_and_lazy_imports() -> None:
    """The circle test sees an import made only for annotations, inside a function, or lazily."""
    source = (
        "if TYPE_CHECKING:\n    import a.b\n"
        "def f():\n    from c import d\n"
        "x: Annotated[E, strawberry.lazy('e.f')]\n"
    )
    assert set(_imports(ast.parse(source))) == {"a.b", "c", "c.d", "e.f"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


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
