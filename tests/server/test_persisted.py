"""Persisted queries as Apollo Client and urql send them: the APQ round (unknown hash, then the
document with its hash, then the hash alone) over POST and GET, Cache-Control on GET answers,
and the allow-list mode on HTTP and WebSockets. Attacks: a document registered under another
document's hash, huge documents, and one user's cached GET handed to another."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode

from server.app import create_app
from server.persisted import (
    MISMATCH,
    NOT_ALLOWED,
    NOT_FOUND,
    ManifestError,
    PersistedQueries,
    PersistedRequest,
    sha256_of,
)
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.scenario import sbatch, slurm
from tests.support.ws import Connection, serving
from transport.local import LocalTransport

VIEWER = "query Viewer { viewer { user admin } }"
CLUSTERS = "query Names { clusters { name } }"


def apq(sha256: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256}}


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


@pytest.fixture
async def client(slurm_cluster: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app without authentication (loopback), over the real cluster."""
    async with app_client(Settings(cache_ttl=2.0), {"local": LocalTransport()}) as client:
        yield client


async def test_the_apq_round_over_post_and_get(client: httpx.AsyncClient) -> None:
    """Hash alone: PersistedQueryNotFound (HTTP 200); hash and document: runs and registers;
    then the hash alone runs it, over POST and over GET, and a GET read is cacheable."""
    sha256 = sha256_of(CLUSTERS)
    first = await client.post("/graphql", json={"extensions": apq(sha256)})
    assert first.status_code == 200
    assert first.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code(first.json()) == NOT_FOUND
    sent = await client.post("/graphql", json={"query": CLUSTERS, "extensions": apq(sha256)})
    assert sent.json() == {"data": {"clusters": [{"name": "local"}]}}
    again = await client.post("/graphql", json={"extensions": apq(sha256)})
    assert again.json() == sent.json()
    got = await client.get("/graphql", params={"extensions": json.dumps(apq(sha256))})
    assert got.json() == sent.json()
    # No authentication configured: every caller reads the same answer.
    assert got.headers["cache-control"] == "public, max-age=2"


async def test_a_document_under_another_documents_hash_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Registering VIEWER under CLUSTERS' hash is refused, nothing runs and nothing is kept: the
    hash still answers PersistedQueryNotFound, never the attacker's document."""
    target = sha256_of(CLUSTERS + " ")
    forged = await client.post("/graphql", json={"query": VIEWER, "extensions": apq(target)})
    assert code(forged.json()) == MISMATCH and "data" not in forged.json()
    after = await client.post("/graphql", json={"extensions": apq(target)})
    assert code(after.json()) == NOT_FOUND
    for bad in ({"version": 2, "sha256Hash": target}, {"version": 1, "sha256Hash": "x" * 64}, 7):
        body = (await client.post("/graphql", json={"extensions": {"persistedQuery": bad}})).json()
        assert code(body) == "BAD_USER_INPUT", bad


async def test_huge_documents_are_refused_and_never_kept(slurm_cluster: str) -> None:
    """A document over the document cap, with its right hash: DOCUMENT_TOO_LARGE, and its hash
    stays unknown; registrations beyond the store's budget push out the oldest."""
    settings = Settings(max_document_bytes=400)
    huge = "query Huge { viewer { user } }" + " " * 500
    async with app_client(settings, {"local": LocalTransport()}) as client:
        body = (
            await client.post("/graphql", json={"query": huge, "extensions": apq(sha256_of(huge))})
        ).json()
        assert code(body) == "DOCUMENT_TOO_LARGE"
        after = await client.post("/graphql", json={"extensions": apq(sha256_of(huge))})
        assert code(after.json()) == NOT_FOUND
    store = PersistedQueries({}, only=False, max_document_bytes=1000, store_bytes=300)
    documents = [f"query Q{i} {{ viewer {{ user }} }}" for i in range(40)]
    for document in documents:
        store.resolve(PersistedRequest(document, sha256_of(document)), keep=True)
    assert 0 < store.stored <= 300 // len(documents[0])
    latest = PersistedRequest(None, sha256_of(documents[-1]))
    assert store.resolve(latest, keep=True) == documents[-1]
    unkept = "query Anonymous { viewer { user } }"
    store.resolve(PersistedRequest(unkept, sha256_of(unkept)), keep=False)  # runs, not kept
    with pytest.raises(Exception, match="PersistedQueryNotFound"):
        store.resolve(PersistedRequest(None, sha256_of(unkept)), keep=True)


async def test_get_answers_per_identity_are_private(unix_users: None) -> None:
    """With tokens, alice's and bob's GET answers are `private` and vary by Authorization (a
    shared cache may not give one's to the other); an answer with errors is `no-store`."""
    settings = Settings(cache_ttl=3.0, tokens=parse_token_map(TOKENS))
    async with app_client(settings, {"local": LocalTransport()}) as client:
        answers = {}
        for user in ("alice", "bob"):
            got = await client.get(
                "/graphql",
                params={"query": VIEWER},
                headers={"Authorization": f"Bearer {user}-token"},
            )
            assert got.headers["cache-control"] == "private, max-age=3", got.headers
            assert "Authorization" in got.headers.get_list("vary")
            answers[user] = got.json()
        assert answers["alice"] != answers["bob"]
        wrong = await client.get(
            "/graphql",
            params={"query": '{ cluster(name: "nope") { name } }'},
            headers={"Authorization": "Bearer alice-token"},
        )
        assert wrong.headers["cache-control"] == "no-store"


def manifest_file(tmp_path: Path, *documents: str) -> str:
    path = tmp_path / "persisted.json"
    operations = [{"id": sha256_of(d), "body": d, "name": "x", "type": "query"} for d in documents]
    path.write_text(
        json.dumps(
            {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
        )
    )
    return str(path)


async def test_only_the_manifest_runs_on_every_channel(slurm_cluster: str, tmp_path: Path) -> None:
    """SLURM_GRAPHQL_PERSISTED_ONLY: the manifest's documents run by hash or whole; any other
    document, over POST, GET or a WebSocket, is PERSISTED_QUERY_NOT_ALLOWED; nothing registers."""
    settings = Settings(persisted_only=True, persisted_manifest=manifest_file(tmp_path, CLUSTERS))
    app = create_app(settings, transports={"local": LocalTransport()})
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        by_hash = await client.post("/graphql", json={"extensions": apq(sha256_of(CLUSTERS))})
        assert by_hash.json() == {"data": {"clusters": [{"name": "local"}]}}
        whole = await client.post("/graphql", json={"query": CLUSTERS})
        assert whole.json() == by_hash.json()
        for attempt in (
            {"query": VIEWER},
            {"query": VIEWER, "extensions": apq(sha256_of(VIEWER))},
        ):
            body = (await client.post("/graphql", json=attempt)).json()
            assert code(body) == NOT_ALLOWED, attempt
        got = await client.get("/graphql", params={"query": VIEWER})
        assert code(got.json()) == NOT_ALLOWED
        unknown = await client.post("/graphql", json={"extensions": apq(sha256_of(VIEWER))})
        assert code(unknown.json()) == NOT_FOUND
        async with Connection.open(url) as connection:
            refused = await (
                await connection.subscribe("subscription { jobEvents { kind } }")
            ).until_complete()
            assert refused[-1].kind == "error"
            assert NOT_ALLOWED in json.dumps(refused[-1].payload)


def test_a_manifest_that_lies_or_does_not_validate_stops_the_server(tmp_path: Path) -> None:
    """A hash that is not its document's sha256, or a document the schema refuses: the app is
    not built (at deploy time, not in front of users); allow-list mode needs a manifest."""
    lying = tmp_path / "lying.json"
    lying.write_text(json.dumps({sha256_of(VIEWER): CLUSTERS}))
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({sha256_of("{ nope }"): "{ nope }"}))
    for path in (lying, stale):
        with pytest.raises(ManifestError):
            create_app(Settings(persisted_manifest=str(path)), transports={})
    with pytest.raises(ManifestError):
        create_app(Settings(persisted_only=True), transports={})


JOBS = (
    "query Jobs($first: Int) { cluster { jobs(first: $first) { edges { node { displayId } } } "
    "nodes { name jobs { displayId } } } }"
)


async def test_a_persisted_document_is_parsed_validated_and_costed_once(
    unix_users: None, tmp_path: Path
) -> None:
    """A manifest document runs by hash again and again (other variables, a queue that grew in
    between): parsed once at start-up, validated once and costed once, as the counters of the
    app's document cache tell; each run still answers the queue of its moment."""
    settings = Settings(cache_ttl=0.5, persisted_manifest=manifest_file(tmp_path, JOBS))
    app = create_app(settings, transports={"local": LocalTransport()})
    documents = app.state.documents
    assert (documents.parses, documents.validations, documents.costings) == (1, 0, 0)
    held = []
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for first in (1, 2, 3):
            body = (
                await client.post(
                    "/graphql",
                    json={"extensions": apq(sha256_of(JOBS)), "variables": {"first": first}},
                )
            ).json()
            assert "errors" not in body, body
            assert len(body["data"]["cluster"]["jobs"]["edges"]) <= first
            held.append(
                await asyncio.to_thread(sbatch, "-J", "costed once", "--hold", "--wrap", "true")
            )
        assert (documents.parses, documents.validations, documents.costings) == (1, 1, 1)
        # The queue grew by three jobs: the plan costed once still reads the queue of the moment.
        deadline = time.monotonic() + 30
        while True:
            sent = {"query": JOBS, "variables": {"first": 10_000}}
            late = (await client.post("/graphql", json=sent)).json()
            listed = {e["node"]["displayId"] for e in late["data"]["cluster"]["jobs"]["edges"]}
            if set(held) <= listed:
                break
            assert time.monotonic() < deadline, (held, listed)
            await asyncio.sleep(0.2)
        assert (documents.parses, documents.validations, documents.costings) == (1, 1, 1)
    await asyncio.to_thread(slurm, "scancel", *held)


async def test_registering_many_hashes_cannot_grow_memory_or_unpin_the_manifest(
    unix_users: None, tmp_path: Path
) -> None:
    """An authenticated attacker registers 400 distinct documents by APQ: the document cache
    stays within its byte capacity (plans included) and the store within its budget, older
    registrations drop out, and the manifest's document is still neither re-parsed,
    re-validated nor re-costed."""
    settings = Settings(
        tokens=parse_token_map(TOKENS),
        persisted_manifest=manifest_file(tmp_path, JOBS),
        document_cache_bytes=256 * 1024,
    )
    app = create_app(settings, transports={"local": LocalTransport()})
    documents, persisted = app.state.documents, app.state.persisted
    alice = {"Authorization": "Bearer alice-token"}
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=alice) as client:
        manifest_run = {"extensions": apq(sha256_of(JOBS))}
        assert "errors" not in (await client.post("/graphql", json=manifest_run)).json()
        before = (documents.parses, documents.validations, documents.costings)
        flood = [
            f"query Flood{i} {{ cluster {{ nodes {{ name jobs {{ displayId }} }} }} }}"
            for i in range(400)
        ]
        for document in flood:
            sent = {"query": document, "extensions": apq(sha256_of(document))}
            assert "errors" not in (await client.post("/graphql", json=sent)).json()
            assert documents.size <= documents.capacity
        assert len(documents) < len(flood)
        assert persisted.stored <= len(flood)
        first = await client.post("/graphql", json={"extensions": apq(sha256_of(flood[-1]))})
        assert "errors" not in first.json()
        assert "errors" not in (await client.post("/graphql", json=manifest_run)).json()
        after = (documents.parses, documents.validations, documents.costings)
        # Each flooding document was parsed, validated and costed once; the manifest's not again.
        assert after == tuple(n + len(flood) for n in before)


def test_a_cost_plan_is_evaluated_with_the_sizes_of_the_moment() -> None:
    """One plan, worked out once, costs a request by the cluster size and variables it is given."""
    from graphql import parse

    from resolvers.bounds import ListBounds
    from schema import build_schema
    from server.cost import CostPlan

    document = parse(JOBS)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    plan = CostPlan.of(build_schema()._schema, operation, {}, 10_000)
    small = ListBounds(jobs=10, jobs_per_node=10, nodes=4)
    large = ListBounds(jobs=1000, jobs_per_node=1000, nodes=4)

    def cost(bounds: ListBounds, first: int) -> int:
        return plan.evaluate({"first": first}, lambda _: bounds, lambda: bounds, 1).cost

    # cluster 1 + jobs (1 + edges (1 + first x (node 1 + displayId 1)))
    #   + nodes (1 + 4 x (name 1 + jobs (1 + jobs_per_node x displayId 1)))
    assert cost(small, 5) == 1 + 1 + 1 + 5 * 2 + 1 + 4 * (1 + 1 + 10)
    assert cost(large, 7) == 1 + 1 + 1 + 7 * 2 + 1 + 4 * (1 + 1 + 1000)
