"""The poll leader's lease (resolvers/shared_poll.py) when the leader's event loop stalls, on a
real redis-server and the real cluster: a stall shorter than the lease's floor (1 s) hands
nothing over, even at a 0.3 s interval; a leader stopped past its lease hands polling over, and
then both replicas' subscribers keep getting events, the old leader following and applying the
new leader's polls as deltas."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import AsyncExitStack

import httpx
import pytest

from resolvers.shared_poll import lease_seconds
from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.server.test_poll_channel import shared_redis as shared_redis  # the module's fixture
from tests.support.counting import CountingTransport
from tests.support.live import slurm_cli, submit
from tests.support.redis_server import RedisServer
from tests.support.server import running_servers
from tests.support.squeue_counter import SqueueCounter
from tests.support.ws import Connection, Subscription, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

FEED = "subscription { jobEvents { kind job { jobId state } } }"
CAROL = {"Authorization": "Bearer carol-token"}
PUBLICATIONS = 'slurm_graphql_poller_publications_total{cluster="local",read="'


async def publications(url: str) -> dict[str, float]:
    """The leader's polls a replica took, by how it read them (its /metrics): delta, whole."""
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    found = {"delta": 0.0, "whole": 0.0}
    for line in text.splitlines():
        if line.startswith(PUBLICATIONS):
            found[line[len(PUBLICATIONS) :].split('"', 1)[0]] = float(line.split()[-1])
    return found


async def until_deltas(url: str, more_than: float, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (await publications(url))["delta"] <= more_than:
        assert time.monotonic() < deadline, f"{url} applied no delta"
        await asyncio.sleep(0.1)


def squeues(transport: CountingTransport) -> int:
    return sum(1 for batch in transport.batches for argv in batch if argv[0] == "squeue")


async def states_of(subscription: Subscription, job_id: str, within: float = 30) -> list[str]:
    """`subscription`'s events about `job_id` (kind and state), until it reads CANCELLED."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    while not seen or not seen[-1].endswith("CANCELLED"):
        message = await subscription.next(max(0.01, deadline - time.monotonic()))
        event = message.payload["data"]["jobEvents"]
        if event["job"] is not None and str(event["job"]["jobId"]) == job_id:
            seen.append(f"{event['kind']} {event['job']['state']}")
    return seen


async def test_a_loop_stall_under_a_second_hands_nothing_over_at_a_short_interval(
    shared_redis: RedisServer,
) -> None:
    """Two replicas in this process poll every 0.3 s (a lease of 1.25 intervals: 375 ms); the
    loop both run in stalls for 0.6 s, three times: the leader still polls after each stall,
    the follower runs no squeue and goes on applying deltas (before the floor, each stall
    handed the lease to the follower: 16 of 16 stalls of 0.3-1.2 s, in-process)."""
    interval = 0.3
    assert lease_seconds(interval) >= 1.0
    settings = Settings(
        poll_interval=interval,
        cache_ttl=interval,
        redis_url=shared_redis.url,
        tokens=parse_token_map(TOKENS),
    )
    leader, follower = CountingTransport(LocalTransport()), CountingTransport(LocalTransport())
    async with (
        serving(create_app(settings, {"local": leader})) as one,
        Connection.open(one, payload=CAROL) as first,
    ):
        await first.subscribe(FEED)  # the first replica to poll leads
        deadline = time.monotonic() + 30
        while not squeues(leader):
            assert time.monotonic() < deadline, "the first replica never polled"
            await asyncio.sleep(0.05)
        async with (
            serving(create_app(settings, {"local": follower})) as two,
            Connection.open(two, payload=CAROL) as second,
        ):
            await second.subscribe(FEED)
            await until_deltas(two, 0)
            for _ in range(3):
                polled, followed = squeues(leader), squeues(follower)
                applied = (await publications(two))["delta"]
                time.sleep(0.6)  # noqa: ASYNC251  # the stall itself: every task of the loop waits
                await asyncio.sleep(6 * interval)
                assert squeues(follower) == followed, "the follower polled: it took the lease"
                assert squeues(leader) >= polled + 3
                assert (await publications(two))["delta"] >= applied + 3


async def test_a_leader_stopped_past_its_lease_hands_over_and_deltas_go_on(
    redis_server: RedisServer, counter: SqueueCounter
) -> None:
    """Two serve processes polling every 0.3 s, a subscriber on each; the leader is stopped
    (SIGSTOP) for its lease and a second: the other polls meanwhile; once the old leader runs
    again, it polls no more, applies the new leader's polls as deltas, and the subscribers of
    both see a job submitted and cancelled afterwards come and go."""
    interval = 0.3
    environ = {
        "SLURM_GRAPHQL_REDIS_URL": redis_server.url,
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_POLL_INTERVAL": str(interval),
        "SLURM_GRAPHQL_CACHE_TTL": "60",
        "SLURM_GRAPHQL_RESPONSE_CACHE": "0",
        "SLURM_GRAPHQL_LOG_LEVEL": "warning",
        **counter.path_environ(),
    }
    with running_servers(2, environ) as replicas:
        pids = {replica.pid for replica in replicas}
        async with AsyncExitStack() as stack:
            feeds = {}
            for replica in replicas:
                connection = await stack.enter_async_context(
                    Connection.open(replica.url, payload=CAROL)
                )
                feeds[replica.pid] = await connection.subscribe(FEED)
            deadline = time.monotonic() + 30
            while not (runs := [r for r in counter.runs() if r.parent in pids]):
                assert time.monotonic() < deadline, "no replica polled"
                await asyncio.sleep(0.05)
            old = next(r for r in replicas if r.pid == runs[-1].parent)
            new = next(r for r in replicas if r is not old)
            await until_deltas(new.url, 0)
            os.kill(old.pid, signal.SIGSTOP)
            try:
                stopped = time.time()
                await asyncio.sleep(lease_seconds(interval) + 1.0)
            finally:
                os.kill(old.pid, signal.SIGCONT)
            resumed = time.time()
            assert [r for r in counter.runs(stopped) if r.parent == new.pid], "nobody took over"
            read = await publications(old.url)
            await asyncio.sleep(1.0)  # the old leader finds its lease gone and follows
            settled = time.time()
            await until_deltas(old.url, read["delta"] + 3)
            job = await submit("--hold", "-J", "lease-handover", "--wrap", "true")
            await asyncio.sleep(4 * interval)
            await slurm_cli("scancel", job)
            seen = await asyncio.gather(*(states_of(feed, job) for feed in feeds.values()))
            assert not [r for r in counter.runs(settled) if r.parent == old.pid]
            assert [r for r in counter.runs(settled) if r.parent == new.pid]
            after = await publications(old.url)
    assert seen == [["ADDED PENDING", "CHANGED CANCELLED"]] * 2, seen
    assert after["delta"] >= read["delta"] + 3, (read, after)
    print(f"\nstopped {resumed - stopped:.2f} s; old leader read {read} then {after}")
