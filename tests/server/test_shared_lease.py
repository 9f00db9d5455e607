"""The snapshot fetch lease shared by replicas (resolvers/shared.py), on a real redis-server and
the real cluster: its holder renews it while its fetch runs, however long, so the others wait
and never fetch too; a holder cancelled or killed mid-fetch lets the others fetch at once (or
within one short lease), so a leader killed during its poll hands polling over within the
poll leader's lease; and a lease planted in Redis neither stalls readers nor stays."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import redis

from resolvers.shared import MAX_LEASE_SECONDS
from resolvers.shared_poll import CLAIMS_PER_INTERVAL, lease_seconds
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.live import SlowSqueue, StampingTransport
from tests.support.redis_server import RedisServer
from tests.support.scenario import Scenario
from tests.support.server import running_servers
from tests.support.squeue_counter import SqueueCounter
from tests.support.ws import Connection
from transport import Transport
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

LISTING = "{ cluster { jobs(first: 10000) { totalCount edges { node { jobId } } } } }"
LEASE_KEY = "slurm-graphql:{local}:lease"
GENERATION_KEY = "slurm-graphql:{local}:generation"
ALICE = {"Authorization": "Bearer alice-token"}
STATE_CHANGED = "subscription ($id: String!) { jobStateChanged(id: $id) { kind } }"


@pytest.fixture
def shared_redis(redis_server: RedisServer) -> RedisServer:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server


@asynccontextmanager
async def apps(
    url: str, transports: list[Transport], interval: float
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One app per transport sharing `url`; TTL 60 s so that only cold reads fetch, and the
    fetch lease 1.25 x `interval` (resolvers/shared.py fetch_lease)."""
    settings = Settings(
        cache_ttl=60.0,
        poll_interval=interval,
        response_cache=False,
        redis_url=url,
        tokens=parse_token_map(TOKENS),
    )
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(app_client(settings, {"local": transport}))
            for transport in transports
        ]


async def listing(client: httpx.AsyncClient) -> Any:
    response = await client.post("/graphql", json={"query": LISTING}, headers=ALICE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["cluster"]["jobs"]


def squeues(transport: CountingTransport) -> int:
    return sum(1 for batch in transport.batches for argv in batch if argv[0] == "squeue")


async def until_leased(url: str, within: float = 30) -> int:
    """The lease's milliseconds left, once a replica holds it."""
    deadline = time.monotonic() + within
    with redis.Redis.from_url(url) as client:
        while (left := int(client.pttl(LEASE_KEY))) <= 0:
            assert time.monotonic() < deadline, "no replica took the fetch lease"
            await asyncio.sleep(0.005)
    return left


async def test_a_fetch_slower_than_five_leases_is_waited_for_not_doubled(
    shared_redis: RedisServer, scenario: Scenario
) -> None:
    """A's squeue takes 6 s (the lease lasts 1.25 s; it lasted a fixed 5 s before, after which
    waiters fetched themselves): A renews the lease meanwhile, so B's cold read waits for A's
    snapshot and runs no squeue of its own."""
    slow, other = SlowSqueue(6.0), CountingTransport(LocalTransport())
    async with apps(shared_redis.url, [slow, other], interval=1.0) as (a, b):
        began = time.monotonic()
        first = asyncio.create_task(listing(a))
        assert await until_leased(shared_redis.url) <= 1250
        second = await listing(b)
        ended = time.monotonic()
        # B's answer is A's snapshot: it came after A's squeue (A may still be answering).
        assert slow.ended and slow.ended[0] <= ended
        assert (await first)["totalCount"] == second["totalCount"]
    assert slow.squeue_calls() == 1
    assert squeues(other) == 0, other.batches
    assert ended - began >= 6.0


async def test_a_holder_cancelled_mid_fetch_releases_the_lease_at_once(
    shared_redis: RedisServer,
) -> None:
    """A fetch cancelled while it holds the lease (its poller stopped, its app shut down)
    releases it on the way out, so the next replica fetches at once rather than wait out the
    lease (10 s here, the longest: a lapse alone would leave it waiting that long). The
    snapshot's fetch is what its caller passes: one that never ends until cancelled."""
    from redis.asyncio import Redis

    from resolvers.shared import SharedSnapshots, SharedState
    from resolvers.snapshot import Need, Snapshot

    async def never(needs: Need) -> Snapshot:
        await asyncio.sleep(3600)
        raise AssertionError("not cancelled")

    state = SharedState(Redis.from_url(shared_redis.url))
    try:
        holder = SharedSnapshots(state, "local", ttl=60.0, interval=60.0)
        generation = await holder.generation()
        assert generation is not None and holder.lease == MAX_LEASE_SECONDS
        fetching = asyncio.create_task(holder.fetch(Need.JOBS, generation, 60.0, never))
        assert await until_leased(shared_redis.url) > 5000
        fetching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetching
        with redis.Redis.from_url(shared_redis.url) as client:
            assert not client.exists(LEASE_KEY)
    finally:
        await state.aclose()


async def test_a_planted_lease_neither_stalls_readers_nor_stays(
    shared_redis: RedisServer, scenario: Scenario
) -> None:
    """Values planted in the lease key (not a token; a token that never expires; one that would
    hold for an hour) are deleted, logged and counted: a cold read fetches at once instead of
    waiting for them to lapse (an hour, or forever)."""
    transport = StampingTransport(LocalTransport())
    planted: list[tuple[bytes, int | None]] = [
        (b"\x00not a token", 60_000),
        (b"0123456789abcdef0123456789abcdef", None),
        (b"0123456789abcdef0123456789abcdef", 3_600_000),
    ]
    async with apps(shared_redis.url, [transport], interval=1.0) as (replica,):
        with redis.Redis.from_url(shared_redis.url) as client:
            for value, px in planted:
                client.incr(GENERATION_KEY)  # the replica's cache goes: a cold read
                client.set(LEASE_KEY, value, px=px)
                began = time.monotonic()
                await listing(replica)
                # A cold listing costs well under a second; a waiting reader would still wait.
                assert time.monotonic() - began < MAX_LEASE_SECONDS / 2, value
                assert client.get(LEASE_KEY) != value
        metrics = (await replica.get("/metrics")).text
    refused = [line for line in metrics.splitlines() if line.startswith("slurm_graphql_redis_ref")]
    assert float(refused[0].split()[-1]) >= len(planted), refused
    assert transport.squeue_calls() == len(planted)


INTERVAL = 0.5


@pytest.fixture
def slow_counter() -> Iterator[SqueueCounter]:
    """squeue runs counted, each 0.3 s slow: a poll holds the fetch lease most of an interval."""
    made = SqueueCounter(delay=0.3)
    try:
        yield made
    finally:
        made.close()


async def test_sigkill_of_the_leader_during_its_fetch_hands_polling_over_within_its_lease(
    redis_server: RedisServer, slow_counter: SqueueCounter, scenario: Scenario
) -> None:
    """Two real serve processes, a subscriber on each; the polling one is SIGKILLed while its
    poll holds the snapshot fetch lease (its squeue under way): the other's first squeue starts
    within the poll leader's lease and a quarter interval of the kill (it waited for a fixed 5 s
    fetch lease to lapse before)."""
    environ = {
        "SLURM_GRAPHQL_REDIS_URL": redis_server.url,
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_POLL_INTERVAL": str(INTERVAL),
        "SLURM_GRAPHQL_CACHE_TTL": "60",
        "SLURM_GRAPHQL_RESPONSE_CACHE": "0",
        "SLURM_GRAPHQL_LOG_LEVEL": "warning",
        **slow_counter.path_environ(),
    }
    with running_servers(2, environ) as replicas:
        pids = {replica.pid for replica in replicas}
        async with AsyncExitStack() as stack:
            for replica in replicas:
                connection = await stack.enter_async_context(
                    Connection.open(replica.url, payload=ALICE)
                )
                subscription = await connection.subscribe(STATE_CHANGED, id=scenario.held)
                await subscription.next(60)
            with redis.Redis.from_url(redis_server.url) as client:
                deadline = time.monotonic() + 30
                # The leader's poll under way: the lease held, and its latest squeue started
                # less than the wrapper's 0.3 s ago (it is sleeping in it).
                while True:
                    assert time.monotonic() < deadline, "never caught the leader mid-fetch"
                    runs = [run for run in slow_counter.runs() if run.parent in pids]
                    left = int(client.pttl(LEASE_KEY))
                    if runs and left > 0 and time.time() - runs[-1].at < 0.2:
                        break
                    await asyncio.sleep(0.005)
                leader = runs[-1].parent
                os.kill(leader, signal.SIGKILL)
                killed = time.time()
            survivor = next(pid for pid in pids if pid != leader)
            deadline = time.monotonic() + 30
            while not [run for run in slow_counter.runs(killed) if run.parent == survivor]:
                assert time.monotonic() < deadline, "no replica took over"
                await asyncio.sleep(0.02)
    takeover = min(r.at for r in slow_counter.runs(killed) if r.parent == survivor) - killed
    # The fetch lease (1.25 intervals, renewed until the kill) lapses no later than the leader
    # lease (lease_seconds: 1 s here, its floor), which a follower claims within a quarter
    # interval of its lapse.
    assert takeover <= lease_seconds(INTERVAL) + INTERVAL / CLAIMS_PER_INTERVAL + 0.3, (
        takeover,
        left,
    )
    print(f"\ntakeover {takeover:.2f} s after the kill")
