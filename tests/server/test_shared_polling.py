"""One poller per cluster across replicas (resolvers/shared_poll.py), on a real redis-server and
the real cluster, over real sockets: the subscription cap holds across replicas, and followers
hear when the leader cannot poll. Squeue per interval with 3 x 100 subscribers and SIGKILL of
the leader run on three real server processes in tests/server/test_replica_processes.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
import redis

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.counting import CountingTransport
from tests.support.live import SlowSqueue, StampingTransport
from tests.support.redis_server import RedisServer
from tests.support.scenario import Scenario
from tests.support.ws import Connection, Subscription, serving
from transport.base import Command
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

INTERVAL = 0.3
SUBSCRIBERS = 100  # per replica
STATE_CHANGED = """
subscription ($id: String!) {
  jobStateChanged(id: $id) { kind job { state exitCode } }
}"""
SEQ_KEY = "slurm-graphql:{local}:poll-seq"
POLL_KEY = "slurm-graphql:{local}:poll"
SNAPSHOT_KEY = "slurm-graphql:{local}:snapshot"


def settings(url: str) -> Settings:
    # Every subscriber is the same anonymous client on loopback, and the cap is shared.
    return Settings(
        poll_interval=INTERVAL, cache_ttl=1.0, redis_url=url, max_subscriptions_per_user=1000
    )


async def states(subscription: Subscription, within: float = 30) -> list[str]:
    """The job states a subscription saw, up to its end."""
    messages = await subscription.until_complete(within)
    assert messages[-1].kind == "complete", messages[-1]
    return [m.payload["data"]["jobStateChanged"]["job"]["state"] for m in messages[:-1]]


async def until_published(url: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    with redis.Redis.from_url(url) as client:
        while not client.get(SEQ_KEY):
            assert time.monotonic() < deadline, "the leader never published"
            await asyncio.sleep(0.02)


async def test_the_subscription_cap_holds_across_replicas(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """SLURM_GRAPHQL_MAX_SUBSCRIPTIONS_PER_USER=2 over two replicas: alice's third stream is
    refused on the other replica (each alone would allow 4); once one ends, she may open one
    again there; bob keeps his own two."""
    capped = Settings(
        poll_interval=INTERVAL,
        cache_ttl=1.0,
        redis_url=redis_server.url,
        tokens=parse_token_map(TOKENS),
        max_subscriptions_per_user=2,
    )
    alice = {"Authorization": "Bearer alice-token"}
    async with (
        serving(create_app(capped)) as one,
        serving(create_app(capped)) as two,
        Connection.open(one, payload=alice) as first,
        Connection.open(two, payload=alice) as second,
        Connection.open(two, payload={"Authorization": "Bearer bob-token"}) as bobs,
    ):
        held = [await first.subscribe(STATE_CHANGED, id=scenario.held) for _ in range(2)]
        for subscription in held:
            assert (await subscription.next(10)).kind == "next"
        refused = await (await second.subscribe(STATE_CHANGED, id=scenario.held)).next(10)
        assert refused.kind == "error", refused
        assert "subscription limit" in json.dumps(refused.payload)
        for _ in range(2):
            mine = await bobs.subscribe(STATE_CHANGED, id=scenario.held)
            assert (await mine.next(10)).kind == "next"
        await held[0].stop()
        for _ in range(100):  # the slot is given back in the background
            again = await second.subscribe(STATE_CHANGED, id=scenario.held)
            answer = await again.next(10)
            if answer.kind == "next":
                break
            await asyncio.sleep(0.05)
        assert answer.kind == "next", answer


async def test_followers_hear_when_the_leader_cannot_poll(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """The leading replica's squeue fails (its CLI is gone): a subscriber on another replica
    gets UNAVAILABLE, then RECOVERED once the leader polls again."""
    broken = [False]

    def rewrite(command: Command) -> Command:
        if broken[0] and command.argv[0] == "squeue":
            return dataclasses.replace(command, argv=("/nonexistent/squeue", *command.argv[1:]))
        return command

    leading = CountingTransport(LocalTransport(), rewrite=rewrite)
    query = "subscription ($id: String!) { jobStateChanged(id: $id) { kind error { code } } }"
    app = create_app(settings(redis_server.url), {"local": leading})
    async with serving(app) as one, Connection.open(one) as on_leader:
        await on_leader.subscribe(query, id=scenario.held)
        await until_published(redis_server.url)
        async with (
            serving(create_app(settings(redis_server.url))) as two,
            Connection.open(two) as follower,
        ):
            subscription = await follower.subscribe(query, id=scenario.held)

            async def event() -> dict[str, Any]:
                data: dict[str, Any] = (await subscription.next(10)).payload["data"]
                return dict(data["jobStateChanged"])

            kinds = [await event()]
            broken[0] = True
            while kinds[-1]["kind"] != "UNAVAILABLE":
                kinds.append(await event())
            broken[0] = False
            while kinds[-1]["kind"] != "RECOVERED":
                kinds.append(await event())
    assert kinds[0]["kind"] == "SNAPSHOT"
    unavailable = next(k for k in kinds if k["kind"] == "UNAVAILABLE")
    assert unavailable["error"]["code"] == "SLURM_UNAVAILABLE", unavailable


async def test_a_poll_slower_than_the_lease_keeps_the_leader(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """The leader's squeue takes two intervals (longer than its 1.25-interval lease): it renews
    the lease meanwhile, so the other replica follows and never polls, and its subscriber
    still hears the leader's polls."""
    interval = 1.0  # a lease of 1.25 s, renewed every 0.25 s: room for a loaded loop
    slow_settings = dataclasses.replace(settings(redis_server.url), poll_interval=interval)
    slow = SlowSqueue(2 * interval)
    async with (
        serving(create_app(slow_settings, {"local": slow})) as one,
        Connection.open(one) as on_leader,
    ):
        await on_leader.subscribe(STATE_CHANGED, id=scenario.held)
        await until_published(redis_server.url, within=30)
        following = StampingTransport(LocalTransport())
        async with (
            serving(create_app(slow_settings, {"local": following})) as two,
            Connection.open(two) as follower,
        ):
            subscription = await follower.subscribe(STATE_CHANGED, id=scenario.held)
            await subscription.next(30)
            polled, led = following.squeue_calls(), slow.squeue_calls()
            with redis.Redis.from_url(redis_server.url) as client:
                seq = int(client.get(SEQ_KEY) or 0)
                # Watched for two more of the leader's polls and publications, each poll longer
                # than the lease, however long they take: not a fixed 6 intervals, which at
                # load ~10 (the real squeue behind the delay, a lagging loop) held one poll.
                deadline = time.monotonic() + 60
                while True:
                    published = int(client.get(SEQ_KEY) or 0) - seq
                    if slow.squeue_calls() - led >= 2 and published >= 2:
                        break
                    assert time.monotonic() < deadline, (slow.squeue_calls() - led, published)
                    await asyncio.sleep(interval / 4)
    assert following.squeue_calls() == polled, following.batches[-3:]
    assert slow.squeue_calls() - led >= 2
    assert published >= 2


async def test_the_leader_publishes_the_bytes_it_stored_not_a_second_encoding(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """A poll whose snapshot the leader fetched and stored for every replica's queries is
    published as those same bytes (read together, in one transaction): the leader does not
    encode the whole queue twice before followers hear of the poll."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    async with (
        serving(create_app(settings(redis_server.url), {"local": LocalTransport()})) as one,
        Connection.open(one) as on_leader,
    ):
        await on_leader.subscribe(STATE_CHANGED, id=scenario.held)
        await until_published(redis_server.url)
        deadline = time.monotonic() + 30
        with redis.Redis.from_url(redis_server.url) as client:
            while True:
                with client.pipeline(transaction=True) as pipe:
                    published, stored = pipe.get(POLL_KEY).get(SNAPSHOT_KEY).execute()
                if published is not None and published == stored:
                    break
                assert time.monotonic() < deadline, "never published the stored bytes"
                await asyncio.sleep(INTERVAL / 3)
