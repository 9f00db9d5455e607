"""Limits on depth, aliases, tokens and cost refuse abusive documents before any command runs."""

from __future__ import annotations

from typing import Any

import httpx

from server.limits import measure
from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport

DEEP = "{ cluster { partitions { nodes { jobs { partition { nodes { jobs { id } } } } } } } }"


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
    costly = "{ cluster { jobs(first: 5000) { edges { node { id name user state } } } } }"
    by_variable = "query($n: Int) { cluster { jobs(first: $n) { edges { node { id } } } } }"
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


def test_cost_counts_list_fields_by_page_size() -> None:
    """A page costs its items' fields once per item it may hold; fragments count where used."""
    from graphql import parse

    found = measure(
        parse(
            "query { cluster { jobs(first: 10) { edges { node { ...f } } } } } "
            "fragment f on Job { id name }"
        ),
        max_page_size=10_000,
    )
    # cluster 1 + jobs 1 + edges (1 + 10 x (node 1 + id 1 + name 1))
    assert found == type(found)(depth=5, aliases=0, cost=2 + 1 + 10 * 3)
