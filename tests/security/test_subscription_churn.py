"""A logged-in user who opens and ends subscriptions in a loop, to make the head node poll more
often than once an interval: on the real cluster, the round trips counted as the server sends
them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.live import StampingTransport
from tests.support.ws import Connection, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

INTERVAL = 0.3
BOB = {"Authorization": "Bearer bob-token"}
FEED = "subscription { nodeEvents(initial: true) { kind name } }"


@dataclass
class Served:
    url: str
    transport: StampingTransport


@pytest.fixture(params=["alone", "shared"])
async def served(request: pytest.FixtureRequest, slurm_cluster: str) -> AsyncIterator[Served]:
    """The app polling every 0.3 s, alone or as the poll leader of replicas sharing a real
    redis-server (its poller then holds the leader lease while it runs)."""
    redis_url = None
    if request.param == "shared":
        redis_url = request.getfixturevalue("redis_server").url
    transport = StampingTransport(LocalTransport())
    settings = Settings(
        poll_interval=INTERVAL,
        cache_ttl=INTERVAL,
        tokens=parse_token_map(TOKENS),
        redis_url=redis_url,
    )
    async with serving(create_app(settings, {"local": transport})) as url:
        yield Served(url, transport)


async def test_reopening_a_subscription_costs_no_more_than_one_poll_an_interval(
    served: Served,
) -> None:
    """bob opens a subscription, takes its first event and ends it, again and again for 30
    intervals, so the replica is left without subscribers between them: the head node still
    gets one poll (a round trip) an interval at most. A poller stopped with its last subscriber
    and a new one polled at once: a poll per subscription."""
    async with Connection.open(served.url, payload=BOB) as bob:
        first = served.transport.calls
        began = time.monotonic()
        opened = 0
        while time.monotonic() - began < 30 * INTERVAL:
            subscription = await bob.subscribe(FEED)
            await subscription.next(30)
            await subscription.stop()
            opened += 1
        elapsed = time.monotonic() - began
        polls = served.transport.calls - first
    print(f"\n{opened} subscriptions, {polls} polls in {elapsed / INTERVAL:.1f} intervals")
    assert opened >= 10
    assert polls <= elapsed / INTERVAL + 2, (polls, elapsed)
