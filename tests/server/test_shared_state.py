"""Replicas sharing state through a real redis-server (SLURM_GRAPHQL_REDIS_URL), over the real
cluster: Redis failing degrades to per-replica caches and sharing resumes when it returns, the
rate limit falls back to each replica's own, a shared snapshot is filtered for each identity, and
nothing a replica reads back from Redis is trusted unchecked. Each replica is its own app (its
own SnapshotSource, transport and Redis pool) in this process, so a test can stop Redis under it
and count its round trips; only Redis joins them. The cross-replica costs on three real server
processes are in tests/server/test_replica_processes.py."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from server.settings import Settings, SettingsError
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.redis_server import RedisServer
from tests.support.scenario import Scenario
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

LISTING = "{ cluster { jobs(first: 10000) { totalCount edges { node { jobId user } } } } }"
SNAPSHOT_KEY = "slurm-graphql:{local}:snapshot"
GENERATION_KEY = "slurm-graphql:{local}:generation"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def shared_redis(redis_server: RedisServer) -> RedisServer:
    """The module's redis-server, emptied for each test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server


@dataclass
class Replica:
    client: httpx.AsyncClient
    transport: CountingTransport

    async def query(self, query: str, token: str = "alice-token", **variables: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def squeues(self) -> int:
        return sum(1 for batch in self.transport.batches for argv in batch if argv[0] == "squeue")


@asynccontextmanager
async def replicas(
    url: str, count: int = 3, ttl: float = 60.0, **more: Any
) -> AsyncIterator[list[Replica]]:
    settings = Settings(
        cache_ttl=ttl, response_cache=False, redis_url=url, tokens=parse_token_map(TOKENS), **more
    )
    async with AsyncExitStack() as stack:
        made = []
        for _ in range(count):
            transport = CountingTransport(LocalTransport())
            client = await stack.enter_async_context(app_client(settings, {"local": transport}))
            made.append(Replica(client, transport))
        yield made


def squeues(group: list[Replica]) -> int:
    return sum(replica.squeues() for replica in group)


SUBMIT = """mutation($input: SubmitJobInput!) { submitJob(input: $input) {
    __typename ... on JobSubmitted { job { displayId jobId } } } }"""
CANCEL = "mutation($id: String!) { cancelJob(id: $id) { __typename } }"


def job_ids(listing: Any) -> set[str]:
    return {str(edge["node"]["jobId"]) for edge in listing["cluster"]["jobs"]["edges"]}


async def holds(server: RedisServer, key: str) -> bool:
    with redis.Redis.from_url(server.url) as client:
        return bool(client.exists(key))


async def redis_up(replica: Replica) -> bool:
    ready = await replica.client.get("/readyz")
    return bool(ready.json()["redis"]["up"])


async def test_redis_stopped_reads_answer_and_sharing_resumes_when_it_returns(
    scenario: Scenario, unix_users: None
) -> None:
    """redis-server stopped mid-run: every replica still answers (alone), /readyz stays 200 and
    says so without internal text, /metrics counts the failures, and a write then is read back
    where it was made. Once Redis runs again (empty), every replica says so without a request
    to find out, drops what it cached alone (even the one that saw no request during the outage
    and so never noticed it), and the three share one fetch that holds the write."""
    server = RedisServer()
    server.start()
    job = None
    try:
        async with replicas(server.url, ttl=60.0) as (a, b, idle):
            group = [a, b, idle]
            await asyncio.gather(*(replica.query(LISTING) for replica in group))
            assert squeues(group) == 1
            server.stop()
            # a and b answer, alone; idle gets no request until Redis is back.
            for replica in (a, b):
                assert scenario.running in job_ids(await replica.query(LISTING))
                assert replica.squeues() <= 1
            payload = await a.query(SUBMIT, input={"script": "#!/bin/sh\nsleep 60\n", "hold": True})
            job = payload["submitJob"]["job"]
            assert str(job["jobId"]) in job_ids(await a.query(LISTING))
            ready = await a.client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["redis"] == {
                "up": False,
                "detail": "unreachable: this replica uses its own cache",
            }
            metrics = (await a.client.get("/metrics")).text
            assert "slurm_graphql_redis_up 0.0" in metrics
            failures = [
                line for line in metrics.splitlines() if line.startswith("slurm_graphql_redis_fail")
            ]
            assert failures and float(failures[0].split()[-1]) >= 1
            assert "127.0.0.1" not in ready.text and "Error" not in ready.text

            server.start()  # empty, as a Redis that restarted without persistence
            # Each replica hears it back by itself (SharedState.watch), requests or not.
            for replica in (a, b):
                await until(functools.partial(redis_up, replica), within=30)
            assert await redis_up(idle)
            # a announces the write it could not announce during the outage (a new generation,
            # which the restarted Redis did not hold), requests or not.
            await until(functools.partial(holds, server, GENERATION_KEY), within=30)
            for replica in group:
                replica.transport.batches.clear()
            assert str(job["jobId"]) in job_ids(await a.query(LISTING))
            answers = await asyncio.gather(
                *(replica.query(LISTING) for replica in group for _ in range(3))
            )
            # The restarted Redis holds a generation none of them had: all three dropped their
            # own caches (idle's predates the write) and shared a's one fetch.
            assert squeues(group) == 1
            assert all(str(job["jobId"]) in job_ids(answer) for answer in answers)
            with redis.Redis.from_url(server.url) as client:
                assert client.exists(SNAPSHOT_KEY)
    finally:
        if job is not None:
            async with replicas(server.url, count=1) as (any_replica,):
                await any_replica.query(CANCEL, id=job["displayId"])
        server.close()


async def test_a_write_while_redis_is_away_is_announced_when_it_returns_with_its_data(
    shared_redis: RedisServer, unix_users: None
) -> None:
    """Redis goes away and comes back with its data (saved, then loaded: a failover to a
    replica): b answers from its cache meanwhile (no fetch), a's submit goes through alone, and
    once Redis answers a announces its write by itself, so b's next listing holds the job
    (the generation Redis kept would not tell b)."""
    async with replicas(shared_redis.url, count=2, ttl=60.0) as (a, b):
        await asyncio.gather(a.query(LISTING), b.query(LISTING))
        with redis.Redis.from_url(shared_redis.url) as client:
            before = client.get(GENERATION_KEY)
            with contextlib.suppress(redis.ConnectionError):
                client.shutdown(save=True)
        shared_redis.stop()  # reaps it
        cached = b.squeues()
        await b.query(LISTING)
        assert b.squeues() == cached
        payload = await a.query(SUBMIT, input={"script": "#!/bin/sh\nsleep 60\n", "hold": True})
        job = payload["submitJob"]["job"]
        try:
            assert str(job["jobId"]) in job_ids(await a.query(LISTING))
            shared_redis.start()
            (shared_redis.directory / "dump.rdb").unlink()  # later starts begin empty again
            with redis.Redis.from_url(shared_redis.url) as client:
                assert client.get(GENERATION_KEY) == before  # it kept its data

            async def announced() -> bool:
                with redis.Redis.from_url(shared_redis.url) as client:
                    return bool(client.get(GENERATION_KEY) != before)

            await until(announced, within=30)
            await until(functools.partial(redis_up, b), within=30)
            assert str(job["jobId"]) in job_ids(await b.query(LISTING))
        finally:
            await a.query(CANCEL, id=job["displayId"])


async def until(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll `condition` until it holds (a loaded machine may take its time), else fail."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def test_a_foreign_or_corrupt_shared_snapshot_is_ignored(
    shared_redis: RedisServer, scenario: Scenario
) -> None:
    """Values planted in the snapshot key (garbage, another cluster's snapshot, a forged job
    list in our format, a zlib bomb) are refused and counted; the replica answers from Slurm."""
    forged_body = (
        b'{"format":1,"cluster":"local","taken_at":1,"needs":8,"generation":0,'
        b'"version":null,"partitions":null,"nodes":null,"jobs":[[1,"1",{"x":1},"",""]]}'
    )
    planted = [
        b"not a snapshot",
        zlib.compress(forged_body.replace(b'"local"', b'"other"')),
        zlib.compress(forged_body),
        zlib.compress(b"[" * 10_000_000),
    ]
    async with replicas(shared_redis.url, count=1) as (replica,):
        with redis.Redis.from_url(shared_redis.url) as client:
            for value in planted:
                client.set(SNAPSHOT_KEY, value, px=60_000)
                replica.transport.batches.clear()
                # A new generation: the replica's own cache goes.
                client.incr("slurm-graphql:{local}:generation")
                client.set(SNAPSHOT_KEY, value, px=60_000)
                data = await replica.query(LISTING)
                ids = {str(e["node"]["jobId"]) for e in data["cluster"]["jobs"]["edges"]}
                assert scenario.running in ids
                assert replica.squeues() == 1
        metrics = (await replica.client.get("/metrics")).text
        refused = [
            line for line in metrics.splitlines() if line.startswith("slurm_graphql_redis_refused")
        ]
        assert float(refused[0].split()[-1]) >= len(planted) - 1, refused


async def test_a_planted_generation_is_replaced_and_writes_still_announce(
    shared_redis: RedisServer, unix_users: None
) -> None:
    """A value that is not a count in the generation key (planted, or corrupted) is replaced,
    counted and logged; writes still announce (INCR on it would fail, and each writer would
    take Redis for down), and the other replica reads the write."""
    async with replicas(shared_redis.url, count=2) as (a, b):
        await b.query(LISTING)
        with redis.Redis.from_url(shared_redis.url) as client:
            client.set(GENERATION_KEY, b"99999999999999999999999 or not a number")
        assert (await a.query(LISTING))["cluster"]["jobs"]["totalCount"] >= 0
        with redis.Redis.from_url(shared_redis.url) as client:
            assert (client.get(GENERATION_KEY) or b"").isdigit()
        payload = await a.query(SUBMIT, input={"script": "#!/bin/sh\nsleep 60\n", "hold": True})
        job = payload["submitJob"]["job"]
        try:
            assert str(job["jobId"]) in job_ids(await b.query(LISTING))
            assert (await a.client.get("/readyz")).json()["redis"]["up"] is True
            metrics = (await a.client.get("/metrics")).text
            refused = [
                line
                for line in metrics.splitlines()
                if line.startswith("slurm_graphql_redis_refused")
            ]
            assert float(refused[0].split()[-1]) >= 1, refused
        finally:
            await a.query(CANCEL, id=job["displayId"])


async def test_start_up_refuses_a_wrong_password_and_starts_alone_without_redis() -> None:
    """A password Redis refuses stops start-up with a message that does not repeat it; a Redis
    that is not there lets the replica start alone and answer."""
    server = RedisServer(password="right-secret")
    server.start()
    try:
        wrong = server.url.replace("right-secret", "wrong-secret")
        with pytest.raises(SettingsError, match="refused the credentials") as refused:
            async with replicas(wrong, count=1):
                pass
        assert "wrong-secret" not in str(refused.value)
        async with replicas(server.url, count=1) as (replica,):
            assert (await replica.query("{ cluster { name } }"))["cluster"]["name"] == "local"
        server.stop()
        async with replicas(server.url, count=1) as (replica,):
            assert (await replica.query("{ cluster { name } }"))["cluster"]["name"] == "local"
            assert (await replica.client.get("/readyz")).json()["redis"]["up"] is False
    finally:
        server.close()


async def test_the_rate_limit_holds_across_replicas(shared_redis: RedisServer) -> None:
    """A burst of 3 per identity, spent round-robin over three replicas: the fourth request is
    refused wherever it lands (each replica alone would admit 9), bob keeps his own bucket, and
    the Redis keys name no identity. With Redis stopped, each replica limits alone again."""
    name = "{ cluster { name } }"

    async def status(replica: Replica, token: str) -> int:
        response = await replica.client.post(
            "/graphql", json={"query": name}, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code

    async with replicas(shared_redis.url, rate_limit=0.01, rate_burst=3) as group:
        statuses = [await status(group[i % 3], "alice-token") for i in range(6)]
        assert statuses == [200, 200, 200, 429, 429, 429]
        assert await status(group[2], "bob-token") == 200
        with redis.Redis.from_url(shared_redis.url) as client:
            keys = [key.decode() for key in client.keys("*")]
        assert keys and all(key.startswith("slurm-graphql:rate:") for key in keys)
        assert not any("alice" in key or "bob" in key for key in keys)
        shared_redis.stop()
        try:
            # Alone, each replica has a full bucket of its own for alice again.
            assert [await status(group[0], "alice-token") for _ in range(4)] == [200] * 3 + [429]
        finally:
            shared_redis.start()


async def test_a_shared_snapshot_is_filtered_for_each_identity_on_every_replica(
    shared_redis: RedisServer, scenario: Scenario, unix_users: None
) -> None:
    """Visibility `own`: Redis holds the whole queue, as fetched, yet bob reading it on another
    replica (no squeue of his own) sees only his jobs, and carol (admin) on a third sees all."""
    submit = """mutation($input: SubmitJobInput!) { submitJob(input: $input) {
        __typename ... on JobSubmitted { job { displayId jobId } } } }"""
    async with replicas(shared_redis.url, job_visibility="own") as (a, b, c):
        mine = await a.query(
            submit, "bob-token", input={"script": "#!/bin/sh\nsleep 60\n", "hold": True}
        )
        job = mine["submitJob"]["job"]
        try:
            everyone = await c.query(LISTING, "carol-token")
            users = {e["node"]["user"] for e in everyone["cluster"]["jobs"]["edges"]}
            assert len(users) > 1
            before = b.squeues()
            seen = await b.query(LISTING, "bob-token")
            assert b.squeues() == before  # served from the shared snapshot
            edges = seen["cluster"]["jobs"]["edges"]
            assert {e["node"]["user"] for e in edges} == {"bob"}
            assert str(job["jobId"]) in {str(e["node"]["jobId"]) for e in edges}
            alice = await a.query(LISTING, "alice-token")
            assert all(e["node"]["user"] == "alice" for e in alice["cluster"]["jobs"]["edges"])
        finally:
            cancel = "mutation($id: String!) { cancelJob(id: $id) { __typename } }"
            await a.query(cancel, "bob-token", id=job["displayId"])
