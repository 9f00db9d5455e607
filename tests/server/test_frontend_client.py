"""The API driven as a frontend drives it, with a real GraphQL client (gql, validating every
document against the committed schema.graphql as a code generator would): a normalised cache
keyed as Apollo's and urql's are (`__typename:id`) over two clusters holding the same job id,
a refetch through node(id:), and a persisted query over GET in the wire format of Apollo's
persisted-query link (gql has no APQ link; the request is the one Apollo Client sends)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.httpx import HTTPXAsyncTransport

from server.app import create_app
from server.settings import Settings
from tests.support.scenario import Scenario
from tests.support.ws import serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

SCHEMA = (Path(__file__).resolve().parent.parent.parent / "schema.graphql").read_text()
JOBS = gql("""
query Jobs($id: String!) {
  clusters { __typename id name job(id: $id) {
    __typename id jobId displayId state partition { __typename id name } } }
}""")
REFETCH = gql("""
query Refetch($id: ID!) {
  node(id: $id) { __typename id ... on Job { jobId displayId state } }
}""")


def normalise(value: Any, cache: dict[str, dict[str, Any]]) -> Any:
    """What Apollo's InMemoryCache does with a result: every object with a __typename and an
    id stored once under `Type:id`, fields merged, references in place of nested objects."""
    if isinstance(value, list):
        return [normalise(item, cache) for item in value]
    if not isinstance(value, dict):
        return value
    fields = {key: normalise(item, cache) for key, item in value.items()}
    if "__typename" in value and "id" in value:
        key = f"{value['__typename']}:{value['id']}"
        cache.setdefault(key, {}).update(fields)
        return {"__ref": key}
    return fields


async def test_a_frontend_client_caches_refetches_and_persists(scenario: Scenario) -> None:
    """Two clusters' job N are two cache entries; refetching one by node(id:) updates only
    that entry; a persisted query over GET answers as the POST did, with Cache-Control."""
    settings = Settings(clusters=(("a", "local://"), ("b", "local://")), cache_ttl=2.0)
    app = create_app(settings, transports={"a": LocalTransport(), "b": LocalTransport()})
    async with serving(app) as url:
        transport = HTTPXAsyncTransport(url=f"{url}/graphql")
        async with Client(transport=transport, schema=SCHEMA) as session:
            cache: dict[str, dict[str, Any]] = {}
            jobs_request = GraphQLRequest(JOBS, variable_values={"id": scenario.held})
            result = await session.execute(jobs_request)
            normalise(result, cache)
            jobs = {k: v for k, v in cache.items() if k.startswith("Job:")}
            assert len(jobs) == 2  # the same Slurm job id on two clusters: two entries
            assert {v["jobId"] for v in jobs.values()} == {int(scenario.held)}
            assert len([k for k in cache if k.startswith("Partition:")]) == 2
            key_a = next(f"Job:{c['job']['id']}" for c in result["clusters"] if c["name"] == "a")
            before = {key: dict(fields) for key, fields in cache.items()}
            cache[key_a]["state"] = "STALE"  # as if the entry had aged
            refetched = await session.execute(
                GraphQLRequest(REFETCH, variable_values={"id": cache[key_a]["id"]})
            )
            normalise(refetched, cache)
            assert cache[key_a]["state"] == before[key_a]["state"] != "STALE"
            assert set(cache) == set(before)  # refetched into its own entry, no new one

            # Apollo's persisted-query link: a hash first, the document once if unknown, then
            # hashed GETs (useGETForHashedQueries).
            document = "query Names { clusters { __typename id name } }"
            sha256 = hashlib.sha256(document.encode()).hexdigest()
            ext = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
            async with httpx.AsyncClient(base_url=url) as http:
                params = {"operationName": "Names", "extensions": json.dumps(ext)}
                miss = (await http.get("/graphql", params=params)).json()
                assert miss["errors"][0]["message"] == "PersistedQueryNotFound"
                sent = await http.post(
                    "/graphql",
                    json={"operationName": "Names", "query": document, "extensions": ext},
                )
                hit = await http.get("/graphql", params=params)
            assert hit.json() == sent.json() and "errors" not in hit.json()
            assert hit.headers["cache-control"] == "public, max-age=2"
            normalise(hit.json()["data"], cache)
            assert {k for k in cache if k.startswith("Cluster:")} == {
                f"Cluster:{c['id']}" for c in result["clusters"]
            }
