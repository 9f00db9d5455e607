"""Limits on depth, aliases, tokens and cost refuse abusive documents before any command runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resolvers.bounds import ListBounds
from schema import build_schema
from server.cost import Cost, operation_cost
from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport

DEEP = "{ cluster { partitions { nodes { jobs { partition { nodes { jobs { jobId } } } } } } } }"


async def post(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", ())]


async def test_abusive_documents_are_refused_without_a_round_trip() -> None:
    """Too deep, too many aliases, too costly, too many tokens: refused with a code, and the
    transport is never called."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(max_depth=6, max_aliases=3, max_cost=10_000, max_tokens=300)
    aliases = "{ " + " ".join(f"a{i}: clusters {{ name }}" for i in range(4)) + " }"
    costly = "{ cluster { jobs(first: 5000) { edges { node { displayId name user state } } } } }"
    by_variable = "query($n: Int) { cluster { jobs(first: $n) { edges { node { displayId } } } } }"
    tokens = "{ " + " ".join("clusters { name }" for _ in range(80)) + " }"
    async with app_client(settings, {"local": transport}) as client:
        for query, message in (
            (DEEP, "depth"),
            (aliases, "aliases"),
            (costly, "cost"),
            (by_variable, "cost"),  # an unknown page size counts as the largest
        ):
            body = await post(client, query)
            assert set(codes(body)) == {"QUERY_TOO_COMPLEX"}, body
            assert any(message in error["message"] for error in body["errors"]), body
        assert codes(await post(client, tokens)) == ["QUERY_TOO_COMPLEX"]
        assert codes(await post(client, "{ cluster { ")) == ["GRAPHQL_PARSE_FAILED"]
        assert codes(await post(client, "{ nope }")) == ["GRAPHQL_VALIDATION_FAILED"]
        cheap = await post(client, "{ clusters { name } }")
    assert cheap == {"data": {"clusters": [{"name": "local"}]}}
    assert transport.calls == 0


async def test_introspection_can_be_turned_off() -> None:
    """With introspection off, __schema is refused; with it on (the default), answered."""
    query = "{ __schema { queryType { name } } }"
    async with app_client(Settings(introspection=False), {"local": LocalTransport()}) as client:
        assert set(codes(await post(client, query))) == {"GRAPHQL_VALIDATION_FAILED"}
    async with app_client(Settings(), {"local": LocalTransport()}) as client:
        assert (await post(client, query))["data"]["__schema"]["queryType"]["name"] == "Query"


def cost_of(query: str, bounds: ListBounds, variables: dict[str, Any] | None = None) -> Cost:
    from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return operation_cost(
        build_schema()._schema,
        operation,
        fragments,
        variables or {},
        lambda name: bounds,
        lambda: bounds,
        1,
        10_000,
    )


SIZES = ListBounds(
    partitions=2,
    nodes=4,
    jobs=420,
    jobs_per_node=100,
    nodes_per_job=2,
    nodes_per_partition=4,
    partitions_per_node=2,
)


def test_cost_counts_list_fields_by_page_size() -> None:
    """A page costs its items' fields once per item it may hold; fragments count where used."""
    found = cost_of(
        "query { cluster { jobs(first: 10) { edges { node { ...f } } } } } "
        "fragment f on Job { displayId name }",
        SIZES,
    )
    # cluster 1 + jobs 1 + edges (1 + 10 x (node 1 + id 1 + name 1))
    assert found == Cost(2 + 1 + 10 * 3)


def test_cost_multiplies_nested_lists_by_the_cluster_size() -> None:
    """A node's jobs cost the most jobs a node holds, a job's nodes the most nodes a job has."""
    found = cost_of("{ cluster { nodes { jobs { nodes { name } } } } }", SIZES)
    # cluster 1 + nodes (1 + 4 x (jobs 1 + 100 x (nodes 1 + 2 x name 1)))
    assert found.cost == 1 + 1 + 4 * (1 + 100 * (1 + 2 * 1))


def test_cost_reads_page_sizes_and_tail_bytes_from_variables() -> None:
    """`first` and `tailBytes` given as variables (or their defaults) cost what they ask for."""
    query = (
        "query($n: Int, $tail: Int! = 1000) { cluster { jobs(first: $n) "
        "{ edges { node { output(tailBytes: $tail) { text } } } } } }"
    )
    found = cost_of(query, SIZES, {"n": 7})
    assert (found.output_reads, found.output_bytes) == (7, 7 * 1000)
    assert cost_of(query, SIZES, {"n": 7, "tail": 10}).output_bytes == 70


def test_every_list_of_objects_has_a_bound() -> None:
    """Each field of the schema that returns a list of objects is named in LIST_BOUNDS, so none
    falls back on a guess."""
    from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type, is_leaf_type

    from server.cost import INTROSPECTION_BOUNDS, LIST_BOUNDS

    schema = build_schema()._schema
    lists = set()
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType):
            continue
        for name, field in type_.fields.items():
            inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if isinstance(inner, GraphQLList) and not is_leaf_type(get_named_type(inner)):
                lists.add((type_.name, name))
    bounded = set(LIST_BOUNDS) | set(INTROSPECTION_BOUNDS)
    assert lists and lists <= bounded, lists - bounded


def test_readme_examples_are_within_the_default_limits() -> None:
    """Every GraphQL example of the README passes the default limits on a large cluster: 1,000
    nodes in 16 partitions (each node in up to 4), 10,000 jobs."""
    import re
    from pathlib import Path

    from graphql import parse

    from server.limits import Limits

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = re.findall(r"```graphql\n(.*?)```", readme, re.S)
    limits = Limits()
    big = ListBounds(
        partitions=16,
        nodes=1_000,
        jobs=10_000,
        jobs_per_node=10_000,
        nodes_per_job=1_000,
        nodes_per_partition=1_000,
        partitions_per_node=4,
    )
    assert examples
    for example in examples:
        parse(example)
        found = cost_of(example, big)
        assert found.cost <= limits.max_cost, (example, found)
        assert found.output_reads <= limits.max_output_reads, (example, found)
        assert found.output_bytes <= limits.max_output_bytes, (example, found)


def test_cost_and_budget_settings_are_read_from_the_environment() -> None:
    """Assumed sizes, output caps and the execution budget: defaults, then set."""
    defaults = Settings.from_environ({})
    assert (defaults.assumed_nodes, defaults.assumed_jobs) == (1_000, 10_000)
    assert (defaults.max_output_reads, defaults.max_output_bytes) == (20, 4 * 1024 * 1024)
    assert (defaults.max_fields, defaults.max_seconds) == (1_000_000, 20.0)
    settings = Settings.from_environ(
        {
            "SLURM_GRAPHQL_ASSUMED_NODES": "50",
            "SLURM_GRAPHQL_ASSUMED_JOBS": "2000",
            "SLURM_GRAPHQL_MAX_OUTPUT_READS": "5",
            "SLURM_GRAPHQL_MAX_OUTPUT_BYTES": "1024",
            "SLURM_GRAPHQL_MAX_FIELDS": "300000",
            "SLURM_GRAPHQL_MAX_SECONDS": "2.5",
        }
    )
    assert (settings.assumed_nodes, settings.assumed_jobs) == (50, 2000)
    assert (settings.max_output_reads, settings.max_output_bytes) == (5, 1024)
    assert (settings.max_fields, settings.max_seconds) == (300_000, 2.5)


def test_introspection_is_costed_by_the_schema_size() -> None:
    """GraphiQL's introspection query passes; introspection nested to amplify is refused."""
    from graphql import get_introspection_query

    from server.limits import Limits

    limits = Limits()
    graphiql = cost_of(get_introspection_query(descriptions=True), SIZES)
    assert graphiql.cost <= limits.max_cost, graphiql
    nested = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    assert cost_of(nested, SIZES).cost > limits.max_cost


def test_a_cost_with_too_many_terms_is_refused_not_walked() -> None:
    """A document whose cost has more than MAX_TERMS distinct products of list lengths (here a
    page size of its own per alias) is TooIntricate, which CostLimit reports as
    QUERY_TOO_COMPLEX, before any evaluation."""
    from graphql import OperationDefinitionNode, parse

    from server.cost import MAX_TERMS, CostPlan, TooIntricate

    pages = " ".join(
        f"p{i}: jobs(first: {i}) {{ edges {{ node {{ name }} }} }}" for i in range(MAX_TERMS + 1)
    )
    operation = parse(f"{{ cluster {{ {pages} }} }}").definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    with pytest.raises(TooIntricate):
        CostPlan.of(build_schema()._schema, operation, {}, 10_000)
    small = parse("{ cluster { jobs(first: 2) { edges { node { name } } } } }").definitions[0]
    assert isinstance(small, OperationDefinitionNode)
    assert len(CostPlan.of(build_schema()._schema, small, {}, 10_000).terms) == 2
