"""One validation serves documents that differ only in their strings (server/document_shapes.py),
and never lets an invalid document through: field conflicts, custom scalars and errors are
validated per document. No cluster is read: the documents here are answered by introspection or
refused before any command runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from graphql import parse
from starlette.routing import Route

from resolvers.identity import Identity
from schema import build_schema
from server.app import create_app
from server.document_shapes import shape_of, strings_are_free
from server.documents import DocumentCache
from server.settings import Settings
from server.tokens import parse_token_map
from transport.local import LocalTransport

SCHEMA = build_schema()._schema
# Whose documents the app below keeps: without authentication configured (loopback only),
# every request is the anonymous identity's, and its documents are kept.
ANONYMOUS = Identity.anonymous().cache_key


def test_a_shape_numbers_strings_by_distinct_value() -> None:
    """Equal strings share a number, a block string stays one, comments and names are kept."""
    document = parse('{ a: f(x: "q", y: "q", z: "r") # "c"\n b: g(w: """q""") }')
    assert shape_of(document) == '{ a: f(x: "0", y: "0", z: "1") # "c"\n b: g(w: """2""") }'
    assert shape_of(parse("{ cluster { name } }")) is None


def test_documents_differing_in_their_strings_share_a_shape() -> None:
    """Two job lookups by different ids have one shape; the same id twice has another."""
    one, other = (parse(f'{{ cluster {{ job(id: "{i}") {{ id }} }} }}') for i in (41, 42))
    assert shape_of(one) == shape_of(other)
    twice = parse('{ cluster { a: job(id: "41") { id } b: job(id: "41") { id } } }')
    apart = parse('{ cluster { a: job(id: "41") { id } b: job(id: "42") { id } } }')
    assert shape_of(twice) != shape_of(apart)


def test_only_string_and_id_positions_are_free() -> None:
    """A job id or a users filter is free text to validation; a DateTime is parsed by it."""
    assert strings_are_free(SCHEMA, parse('{ cluster { job(id: "1") { id } } }'))
    assert strings_are_free(SCHEMA, parse('{ cluster { jobs(filter: {users: "x"}) { total } } }'))
    submit = 'mutation { submitJob(input: {script: "x", beginTime: "2030-01-01T00:00:00Z"}) '
    assert not strings_are_free(SCHEMA, parse(submit + "{ __typename } }"))


def test_kept_shapes_are_bounded_by_bytes() -> None:
    """Shapes live within a quarter of the cache's capacity, oldest out first."""
    cache = DocumentCache(capacity=40_000)
    for index in range(200):
        cache.remember_shape(f'{{ f{index}(x: "0") {"x" * 100} }}', "alice:0:1")
    assert cache.shapes_size <= 10_000
    assert not cache.shape_validated('{ f0(x: "0") ' + "x" * 100 + " }", "alice:0:1")
    assert cache.shape_validated('{ f199(x: "0") ' + "x" * 100 + " }", "alice:0:1")


@dataclass
class App:
    http: httpx.AsyncClient
    documents: DocumentCache  # the app's own cache of parsed documents


@pytest.fixture
async def app() -> AsyncIterator[App]:
    settings = Settings(clusters=(("local", "local://"),))
    asgi = create_app(settings, transports={"local": LocalTransport()})
    graphql = next(r.endpoint for r in asgi.routes if isinstance(r, Route) and r.path == "/graphql")
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            documents: DocumentCache = getattr(graphql, "documents")  # noqa: B009 (the view's own, untyped here)
            yield App(http, documents)


async def post(app: App, query: str) -> dict[str, Any]:
    response = await app.http.post("/graphql", json={"query": query})
    body: dict[str, Any] = response.json()
    return body


async def test_a_valid_shape_does_not_validate_a_conflict(app: App) -> None:
    """Once `a` twice with equal arguments has validated, `a` with different arguments is still
    refused as a field conflict, with graphql-core's own message."""
    same = '{ a: __type(name: "Job") { name } a: __type(name: "Job") { name } }'
    assert (await post(app, same))["data"] == {"a": {"name": "Job"}}
    differ = '{ a: __type(name: "Job") { name } a: __type(name: "Node") { name } }'
    errors = (await post(app, differ))["errors"]
    assert "differing arguments" in errors[0]["message"]


async def test_a_shape_with_a_datetime_validates_each_document(
    app: App,
) -> None:
    """A valid beginTime does not vouch for a malformed one of the same shape: that is still a
    validation error naming the value, before anything runs."""
    submit = 'mutation {{ submitJob(input: {{script: "x", beginTime: "{}"}}) {{ __typename }} }}'
    await post(app, submit.format("2030-01-01T00:00:00Z"))
    errors = (await post(app, submit.format("not a time")))["errors"]
    assert "not a time" in errors[0]["message"]


async def test_lookups_by_other_names_share_one_validation(app: App) -> None:
    """After one lookup has validated, its shape is kept: lookups by other names are answered
    (correctly) without validating their documents again."""
    for name in ("Job", "Node", "Partition"):
        query = f'{{ __type(name: "{name}") {{ name }} }}'
        assert (await post(app, query))["data"]["__type"] == {"name": name}
        assert app.documents.shape_validated('{ __type(name: "0") { name } }', ANONYMOUS)


async def test_one_user_s_documents_never_answer_another_s() -> None:
    """The shape cache is no timing oracle: after alice's lookups of one shape validated and
    were kept, bob's first document of that shape is his own miss (it validates), as is his
    first copy of alice's very document; each user's repeats are then their own hits."""
    settings = Settings(
        clusters=(("local", "local://"),), tokens=parse_token_map("alice-token=alice,bob-token=bob")
    )
    asgi = create_app(settings, transports={"local": LocalTransport()})
    graphql = next(r.endpoint for r in asgi.routes if isinstance(r, Route) and r.path == "/graphql")
    documents: DocumentCache = getattr(graphql, "documents")  # noqa: B009 (the view's own, untyped here)
    shape = '{ __type(name: "0") { name } }'
    alice, bob = (Identity(user=user).cache_key for user in ("alice", "bob"))
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:

            async def ask(token: str, name: str) -> Any:
                response = await http.post(
                    "/graphql",
                    json={"query": f'{{ __type(name: "{name}") {{ name }} }}'},
                    headers={"Authorization": f"Bearer {token}"},
                )
                return response.json()["data"]["__type"]

            for name in ("Job", "Node", "Job"):
                assert await ask("alice-token", name) == {"name": name}
            assert documents.shape_validated(shape, alice)
            assert not documents.shape_validated(shape, bob)
            text = '{ __type(name: "Job") { name } }'
            assert documents.validated(text, parse(text), bob) is None
            assert await ask("bob-token", "Job") == {"name": "Job"}
            assert documents.shape_validated(shape, bob)
