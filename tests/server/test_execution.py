"""The lean executor gives exactly graphql-core's results and errors, only faster; the stock
executor (SLURM_GRAPHQL_FAST_EXECUTION=false) keeps the same budget and turns."""

from __future__ import annotations

import asyncio
import enum
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import GraphQLObjectType

from server.app import create_app
from server.budget import Budget, BudgetedExecutionContext
from server.execution import LeanExecutionContext
from server.settings import Settings
from tests.support.app import app_client

EXECUTORS = [LeanExecutionContext, BudgetedExecutionContext]


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Leaf:
    text: str
    maybe: str | None
    colour: Colour
    _value: strawberry.Private[int]

    @strawberry.field
    def doubled(self) -> int:
        return self._value * 2

    @strawberry.field
    def broken(self) -> int:
        if self._value == 2:
            raise ValueError("broken getter")
        return self._value

    @strawberry.field
    def must(self) -> str:
        # Breaks its non-null promise for one item: the error must null the parent item.
        return None if self._value == 3 else "ok"  # type: ignore[return-value]

    @strawberry.field
    def huge(self) -> int:
        return 2**40 if self._value == 1 else 1  # beyond Int: a coercion error


@strawberry.type
class Edge:
    node: Leaf

    @strawberry.field
    def again(self) -> Leaf | None:
        return self.node if self.node._value % 2 else None


def make_edges() -> list[Edge]:
    return [
        Edge(node=Leaf(text=f"t{i}", maybe=None, colour=Colour.RED, _value=i)) for i in range(5)
    ]


@strawberry.type
class Query:
    @strawberry.field
    def edges(self) -> list[Edge]:
        return make_edges()

    @strawberry.field
    def loose(self) -> list[Edge | None]:
        return list(make_edges())

    @strawberry.field
    async def later(self) -> Leaf:
        return Leaf(text="later", maybe="m", colour=Colour.BLUE, _value=7)


QUERIES = [
    "{ edges { node { text maybe colour doubled } again { text } } }",
    "{ edges { node { broken } } }",
    "{ edges { node { must text } } }",
    "{ edges { node { huge } } }",
    "{ loose { node { must } } }",
    "{ edges { again { must text } } }",
    "{ later { text doubled colour } edges { node { text } } }",
    "query { a: edges { n: node { t: text ...F } } } fragment F on Leaf { maybe colour }",
    "{ edges { __typename node { __typename text } } }",
]


def normalise(result: Any) -> dict[str, Any]:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or ())
    return {"data": result.data, "errors": errors}


@pytest.mark.parametrize("query", QUERIES)
async def test_same_results_and_errors_as_graphql_core(query: str) -> None:
    """Every query, including failing getters, nulls in non-null fields and coercion errors."""
    plain = strawberry.Schema(query=Query)
    lean = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext)
    # An app's executor keeps each field's shortcut: first filled, then read.
    kept = LeanExecutionContext.with_budget(Budget())
    keeping = strawberry.Schema(query=Query, execution_context_class=kept)
    expected = normalise(await plain.execute(query))
    assert normalise(await lean.execute(query)) == expected
    assert normalise(await keeping.execute(query)) == expected
    assert normalise(await keeping.execute(query)) == expected
    assert expected["data"] is not None or expected["errors"]  # the query itself is valid


@strawberry.type
class BigQuery:
    @strawberry.field
    def big(self) -> list[Edge]:
        return [
            Edge(node=Leaf(text=f"t{i}", maybe=None, colour=Colour.BLUE, _value=i))
            for i in range(20_000)
        ]


BIG = "{ big { node { text doubled colour maybe } again { text must } } }"


@pytest.mark.parametrize("executor_class", EXECUTORS)
async def test_pausing_for_other_requests_changes_no_result(
    executor_class: type[BudgetedExecutionContext],
) -> None:
    """A listing long enough to hand the event loop back many times gives exactly graphql-core's
    data and errors, in order."""
    plain = strawberry.Schema(query=BigQuery)
    pausing = executor_class.with_budget(Budget(yield_after=0.001))
    lean = strawberry.Schema(query=BigQuery, execution_context_class=pausing)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    expected = normalise(await plain.execute(BIG))
    counter = asyncio.ensure_future(count_turns())
    await asyncio.sleep(0)  # the counter is under way
    try:
        got = normalise(await lean.execute(BIG))
    finally:
        counter.cancel()
    assert got == expected
    assert turns > 5  # others ran while it executed


@pytest.mark.parametrize("executor_class", EXECUTORS)
async def test_a_spent_budget_stops_with_one_error_and_no_data(
    executor_class: type[BudgetedExecutionContext],
) -> None:
    """Past its fields (or seconds), an execution ends with one QUERY_TOO_COMPLEX error and no
    partial data, however many fields were still to come."""
    for budget in (Budget(max_fields=1_000), Budget(max_seconds=0.001)):
        executor = executor_class.with_budget(budget)
        result = await strawberry.Schema(query=BigQuery, execution_context_class=executor).execute(
            BIG
        )
        assert result.data is None
        assert [e.extensions for e in result.errors or ()] == [{"code": "QUERY_TOO_COMPLEX"}]


def test_graphql_core_is_pinned_to_the_release_the_executor_is_tested_with() -> None:
    """The executors extend graphql-core's internals: pyproject.toml pins it to one minor release,
    and the installed one is inside that pin."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("graphql-core")]
    low, high = pin.removeprefix("graphql-core>=").split(",<")
    installed = tuple(int(part) for part in version("graphql-core").split(".")[:3])
    low_version = tuple(int(part) for part in low.split("."))
    high_version = tuple(int(part) for part in high.split("."))
    assert high_version[0] == low_version[0] and high_version[1] == low_version[1] + 1
    assert low_version <= installed < high_version


@pytest.mark.parametrize(("value", "lean_calls"), [("true", 1), ("false", 0)])
async def test_fast_execution_setting_chooses_the_executor(
    value: str, lean_calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM_GRAPHQL_FAST_EXECUTION=false takes the lean executor out of the app entirely."""
    calls = 0
    lean = LeanExecutionContext._execute_fields_now

    def counting(self: LeanExecutionContext, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return lean(self, *args)

    monkeypatch.setattr(LeanExecutionContext, "_execute_fields_now", counting)
    settings = Settings.from_environ({"SLURM_GRAPHQL_FAST_EXECUTION": value})
    async with app_client(settings, {}) as client:
        response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}
    assert calls == lean_calls


def _schema_fields(schema: strawberry.Schema) -> set[tuple[str, str]]:
    types = schema._schema.type_map.values()  # graphql-core's schema, as strawberry builds it
    return {
        (t.name, name)
        for t in types
        if isinstance(t, GraphQLObjectType)
        for name in (*t.fields, "__typename")
    }


async def test_kept_shortcuts_are_bounded_by_the_schema() -> None:
    """However many aliases and names a client sends, an app's executor keeps at most one
    shortcut per field of its schema; another schema run through it is answered, not kept."""
    executor = LeanExecutionContext.with_budget(Budget())
    schema = strawberry.Schema(query=Query, execution_context_class=executor)
    aliased = " ".join(f"a{i}: edges {{ n{i}: node {{ t{i}: text }} }}" for i in range(300))
    for query in [*QUERIES, f"{{ {aliased} }}", "{ nothing }", "{ edges { node { nope } } }"]:
        await schema.execute(query)
    shortcuts = executor.shortcuts
    assert shortcuts is not None
    assert shortcuts.table
    assert set(shortcuts.table) <= _schema_fields(schema)
    other = strawberry.Schema(query=BigQuery, execution_context_class=executor)
    kept = dict(shortcuts.table)
    expected = normalise(await strawberry.Schema(query=BigQuery).execute(BIG))
    assert normalise(await other.execute(BIG)) == expected
    assert shortcuts.table == kept
    assert LeanExecutionContext.shortcuts is None  # the class itself keeps nothing


@pytest.mark.parametrize("value", ["true", "false"])
async def test_an_apps_shortcuts_are_in_its_state(value: str) -> None:
    """app.state.field_shortcuts shows what the lean executor keeps (None without it), and one
    app's table is not another's."""
    settings = Settings.from_environ({"SLURM_GRAPHQL_FAST_EXECUTION": value})
    first, second = create_app(settings, transports={}), create_app(settings, transports={})
    if value == "false":
        assert first.state.field_shortcuts is None
        return
    assert first.state.field_shortcuts is not second.state.field_shortcuts
    async with (
        first.router.lifespan_context(first),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first), base_url="http://localhost"
        ) as client,
    ):
        response = await client.post("/graphql", json={"query": "{ clusters { name } }"})
    assert "errors" not in response.json()
    assert ("Query", "clusters") in first.state.field_shortcuts.table
    assert not second.state.field_shortcuts.table
