"""A logged-in user who makes the head node look up jobs for nothing, through subscriptions.

`jobStateChanged` on a job its subscriber may not see (alice's, as bob, under
SLURM_GRAPHQL_JOB_VISIBILITY=own) or on an id nobody has is looked up on the head node
(scontrol per id, sacct, sacct -c) and ends UNKNOWN. bob reopens such subscriptions as fast as
they end: before resolvers/lookup_backoff.py every poll paid that round trip (34 commands); now
his look-ups wait 2, 4, 8, then 16 polls, alice's are not held up by his, and his waits are the
same for her jobs as for ids nobody has, even when one of hers leaves squeue meanwhile. On the
real cluster, the commands counted as the server sends them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from server.app import create_app
from tests.support.counting import CountingTransport
from tests.support.live import PurgingTransport
from tests.support.visibility import MISSING, Jobs, missing_like, modulo, own_settings
from tests.support.visibility import jobs as jobs  # the module's fixture
from tests.support.ws import Connection, Message, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

INTERVAL = 0.3
FOLLOW = "subscription($id: String!) { jobStateChanged(id: $id) { kind jobId job { user } } }"
BOB = {"Authorization": "Bearer bob-token"}
ALICE = {"Authorization": "Bearer alice-token"}
LOOKUP = ("scontrol", "sacct")


@dataclass
class Served:
    url: str
    transport: PurgingTransport


@pytest.fixture
async def served(unix_users: None) -> AsyncIterator[Served]:
    """The app under `own` on loopback, polling every 0.3 s, its commands counted."""
    transport = PurgingTransport(LocalTransport())
    settings = own_settings(poll_interval=INTERVAL, cache_ttl=INTERVAL)
    async with serving(create_app(settings, {"local": transport})) as url:
        yield Served(url, transport)


def polls_and_lookups(transport: CountingTransport) -> tuple[int, int, int]:
    """Round trips that polled (ran squeue), that looked jobs up, and the look-up commands."""
    polls = sum(1 for batch in transport.batches if any(argv[0] == "squeue" for argv in batch))
    lookups = [b for b in transport.batches if any(argv[0] in LOOKUP for argv in b)]
    return polls, len(lookups), sum(len(batch) for batch in lookups)


def missing(count: int) -> list[str]:
    return [str(int(MISSING) + n) for n in range(count)]


async def follow(connection: Connection, job_id: str, within: float = 30) -> list[Message]:
    return await (await connection.subscribe(FOLLOW, id=job_id)).until_complete(within)


async def test_reopening_subscriptions_to_jobs_he_cannot_see_costs_a_lookup_every_few_polls(
    served: Served, jobs: Jobs
) -> None:
    """bob holds 100 subscriptions (two sockets of 50: alice's jobs and ids nobody has) and
    reopens each as it ends, for 30 polls: every answer is UNKNOWN, and the head node ran a
    look-up for under a fifth of the polls (it ran one every poll, 34 commands each)."""
    ids = [*jobs.alice_forms, *missing(95)]
    ends = time.monotonic() + 30 * INTERVAL
    kinds: set[str] = set()

    async def keep_reopening(connection: Connection, job_id: str) -> int:
        reopened = 0
        while time.monotonic() < ends:
            [event, complete] = await follow(connection, job_id, within=60)
            assert complete.kind == "complete", complete
            kinds.add(event.payload["data"]["jobStateChanged"]["kind"])
            reopened += 1
        return reopened

    async with (
        Connection.open(served.url, payload=BOB) as one,
        Connection.open(served.url, payload=BOB) as two,
    ):
        before = polls_and_lookups(served.transport)
        answered = await asyncio.gather(
            *(keep_reopening(one if n % 2 else two, i) for n, i in enumerate(ids))
        )
    polls, lookups, commands = (
        after - was for after, was in zip(polls_and_lookups(served.transport), before, strict=True)
    )
    assert kinds == {"UNKNOWN"}
    assert sum(answered) >= len(ids)
    assert polls >= 20, polls
    assert lookups <= polls / 5, (polls, lookups, commands)
    print(f"\n{polls} polls, {lookups} look-ups, {commands} commands, {sum(answered)} answers")


async def test_leaving_the_replica_without_subscribers_does_not_reset_the_wait(
    served: Served, jobs: Jobs
) -> None:
    """bob follows one id at a time, each once the last ended, for 30 polls, so the replica's
    poller stops between them (and a new one polls at once): his look-ups still wait longer
    each time (2, 4, 8, 16 polls), 5 of them at most in those 30 polls."""
    ids = itertools.chain([jobs.alice_running], (str(int(MISSING) + n) for n in itertools.count()))
    async with Connection.open(served.url, payload=BOB) as bob:
        before = polls_and_lookups(served.transport)
        ends = time.monotonic() + 30 * INTERVAL
        while time.monotonic() < ends:
            [event, _] = await follow(bob, next(ids))
            assert event.payload["data"]["jobStateChanged"]["kind"] == "UNKNOWN"
    polls, lookups, _ = (
        after - was for after, was in zip(polls_and_lookups(served.transport), before, strict=True)
    )
    assert 2 <= lookups <= 5, (polls, lookups)


async def test_bobs_waits_do_not_hold_up_alice(served: Served, jobs: Jobs) -> None:
    """While bob waits for his next look-up (16 polls), alice follows an id nobody has: she is
    answered within a few polls, and bob's subscription, opened first, after hers."""
    async with (
        Connection.open(served.url, payload=BOB) as bob,
        Connection.open(served.url, payload=ALICE) as alice,
    ):
        *futile, his_id, her_id = missing(6)
        for job_id in futile:  # 4 futile look-ups in a row: his next waits 16 polls
            await follow(bob, job_id)
        his = asyncio.ensure_future(follow(bob, his_id))
        began = time.monotonic()
        [hers, _] = await follow(alice, her_id)
        assert time.monotonic() - began < 6 * INTERVAL + 1.0
        assert hers.payload["data"]["jobStateChanged"]["kind"] == "UNKNOWN"
        [his_event, _] = await his
    assert his_event.received > hers.received + 4 * INTERVAL


async def test_his_wait_is_the_same_for_her_job_leaving_squeue_as_for_a_missing_id(
    served: Served, jobs: Jobs
) -> None:
    """bob, waiting for his next look-up, follows alice's running job and an id nobody has; her
    job then leaves squeue (purged, as Slurm does MinJobAge after a job ends), so the poller
    looks it up for its own sake: bob's two answers still come with his own look-up, together,
    and alike to the letter."""
    hers = jobs.alice_running
    async with Connection.open(served.url, payload=BOB) as bob:
        for job_id in missing(3):  # 3 futile look-ups in a row: his next waits 8 polls
            await follow(bob, job_id)
        before = polls_and_lookups(served.transport)[1]
        answers = asyncio.gather(follow(bob, hers), follow(bob, missing_like(hers)))
        await asyncio.sleep(2 * INTERVAL)
        served.transport.purge(hers)
        purged = time.time()
        theirs, nobodys = await answers
    assert polls_and_lookups(served.transport)[1] - before >= 2  # hers, then his
    assert theirs[0].received > purged + 2 * INTERVAL
    assert abs(theirs[0].received - nobodys[0].received) < INTERVAL / 2
    text = json.dumps(theirs[0].payload)
    assert modulo(text, hers) == modulo(json.dumps(nobodys[0].payload), missing_like(hers))
    assert theirs[0].payload["data"]["jobStateChanged"]["kind"] == "UNKNOWN"
