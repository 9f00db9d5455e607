"""Global object identification on the real cluster: every object refetches through node(id:)
in one round trip, two clusters' same job are two objects, and an attacker gets nothing from
ids: bob's node(id:) of alice's job under `own` answers exactly as for a job that does not
exist; forged, tampered or huge ids are null (nothing run, never another object or an internal
error), and too many ids are BAD_USER_INPUT before any command runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from resolvers.global_ids import MAX_IDS, Kind, global_id
from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.scenario import Scenario
from tests.support.visibility import MISSING, Jobs, assert_nothing_of_alice, own_settings
from tests.support.visibility import jobs as jobs  # the module's fixture
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ...Names } }"
NAMES = """fragment Names on Node {
  ... on Cluster { name } ... on Partition { name } ... on ComputeNode { name }
  ... on Job { displayId jobId user name }
}"""


class Client:
    def __init__(self, client: httpx.AsyncClient, transport: CountingTransport) -> None:
        self.client = client
        self.transport = transport

    async def raw(self, user: str | None, query: str, **variables: Any) -> str:
        headers = {"Authorization": f"Bearer {user}-token"} if user else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.text

    async def query(self, user: str | None, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {user}-token"} if user else {},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def two_clusters(slurm_cluster: str) -> AsyncIterator[Client]:
    """Clusters `a` and `b`, both the real cluster: the same jobs under two names."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("a", "local://"), ("b", "local://")), cache_ttl=0.0)
    async with app_client(settings, {"a": transport, "b": transport}) as client:
        yield Client(client, transport)


@pytest.fixture
async def own(unix_users: None) -> AsyncIterator[Client]:
    """The app under SLURM_GRAPHQL_JOB_VISIBILITY=own, with the test token map."""
    transport = CountingTransport(LocalTransport())
    async with app_client(own_settings(), {"local": transport}) as client:
        yield Client(client, transport)


async def test_every_object_refetches_by_its_id_in_one_round_trip(
    two_clusters: Client, scenario: Scenario
) -> None:
    """Each cluster, partition, compute node and job (array tasks and an array's pending rest
    included) comes back from nodes(ids:) as itself, in one round trip for them all."""
    listing = await two_clusters.query(
        None,
        'query($ids: [String!]) { cluster(name: "b") { __typename id name '
        "partitions { __typename id name } nodes { __typename id name } "
        "jobs(first: 60, filter: {ids: $ids}) { edges { node { __typename id "
        "displayId jobId user name } } } } }",
        ids=scenario.all_ids,
    )
    cluster = listing["data"]["cluster"]
    objects = [
        {"__typename": "Cluster", "id": cluster["id"], "name": "b"},
        *cluster["partitions"],
        *cluster["nodes"],
        *(edge["node"] for edge in cluster["jobs"]["edges"]),
    ][:MAX_IDS]
    assert any(o.get("displayId") == f"{scenario.array}_[3-6%2]" for o in objects), [
        o["displayId"] for o in objects if "displayId" in o
    ]
    before = two_clusters.transport.calls
    body = await two_clusters.query(None, NODES + NAMES, ids=[o["id"] for o in objects])
    assert "errors" not in body, body
    assert body["data"]["nodes"] == objects
    assert two_clusters.transport.calls == before + 1


async def test_two_clusters_same_job_are_two_objects(
    two_clusters: Client, scenario: Scenario
) -> None:
    """Job N of cluster a and job N of cluster b have two ids; each refetches as itself."""
    body = await two_clusters.query(
        None, f'{{ clusters {{ name job(id: "{scenario.held}") {{ id jobId }} }} }}'
    )
    a, b = body["data"]["clusters"]
    assert a["job"]["jobId"] == b["job"]["jobId"] == int(scenario.held)
    assert a["job"]["id"] != b["job"]["id"]
    again = await two_clusters.query(None, NODES + NAMES, ids=[b["job"]["id"], a["job"]["id"]])
    assert [n["id"] for n in again["data"]["nodes"]] == [b["job"]["id"], a["job"]["id"]]


async def test_unknown_clusters_and_missing_objects_are_null_without_a_command(
    two_clusters: Client,
) -> None:
    """An id of a cluster not configured is null and reads nothing; a missing job is null."""
    before = two_clusters.transport.calls
    ids = [
        global_id(Kind.JOB, "elsewhere", "1"),
        global_id(Kind.CLUSTER, "elsewhere"),
        global_id(Kind.COMPUTE_NODE, "a", "no-such-node"),
    ]
    body = await two_clusters.query(None, NODES + NAMES, ids=ids)
    assert body == {"data": {"nodes": [None, None, None]}}
    assert two_clusters.transport.calls == before + 1  # cluster a's nodes, once


@pytest.mark.parametrize(
    "bad",
    [
        "garbage!",
        "42",
        "A" * 100_000,
        global_id(Kind.JOB, "a", "1") + "x",
    ],
)
async def test_forged_ids_are_null_and_run_nothing(two_clusters: Client, bad: str) -> None:
    """Forged, truncated, tampered or huge ids: null, as Relay clients expect of an id that
    names nothing (never another object, never an internal error), and nothing is run; in a
    list, null in its place beside the answers for good ids."""
    before = two_clusters.transport.calls
    body = await two_clusters.query(None, "query($id: ID!) { node(id: $id) { id } }", id=bad)
    assert body == {"data": {"node": None}}, body
    cluster = global_id(Kind.CLUSTER, "a")
    body = await two_clusters.query(
        None, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=[bad, cluster]
    )
    assert body == {"data": {"nodes": [None, {"id": cluster}]}}, body
    assert two_clusters.transport.calls == before


async def test_too_many_ids_are_refused(two_clusters: Client) -> None:
    """nodes(ids:) past its cap is BAD_USER_INPUT, nothing run."""
    before = two_clusters.transport.calls
    ids = [global_id(Kind.JOB, "a", str(i)) for i in range(MAX_IDS + 1)]
    body = await two_clusters.query(
        None, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=ids
    )
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}, body
    assert two_clusters.transport.calls == before


async def test_bob_gets_from_alices_ids_what_a_missing_job_gets(own: Client, jobs: Jobs) -> None:
    """Under `own`, bob's node(id:) and nodes(ids:) of alice's jobs answer byte for byte as for
    a job that does not exist; his own job he gets; her node shows none of her jobs."""
    missing = global_id(Kind.JOB, "local", MISSING)
    lookup = "query($id: ID!) { node(id: $id) { id ...Names } }" + NAMES
    expected = await own.raw("bob", lookup, id=missing)
    assert expected == '{"data":{"node":null}}'
    held_task = jobs.alice_held  # the array's pending rest keeps the array's number
    for job_id in (jobs.alice_running, held_task, jobs.alice_done):
        theirs = global_id(Kind.JOB, "local", job_id)
        assert await own.raw("bob", lookup, id=theirs) == expected
        assert await own.raw("alice", lookup, id=theirs) != expected  # it does exist
        listed = await own.raw("bob", NODES + NAMES, ids=[theirs, missing])
        assert listed == '{"data":{"nodes":[null,null]}}'
    mine = await own.query("bob", lookup, id=global_id(Kind.JOB, "local", jobs.bob_running))
    assert mine["data"]["node"]["user"] == "bob"
    node = global_id(Kind.COMPUTE_NODE, "local", jobs.node)
    text = await own.raw(
        "bob",
        "query($id: ID!) { node(id: $id) { ... on ComputeNode { jobs { ...Names } } } }" + NAMES,
        id=node,
    )
    assert jobs.bob_running in text
    assert_nothing_of_alice(text, jobs)
