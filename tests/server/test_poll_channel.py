"""The poll leader's publications (resolvers/shared_poll.py) on a real redis-server: followers
apply the delta of a poll they hold the base of and read the rest whole; a publication that a
leader of the current epoch did not make is dropped, logged and counted; and, over real sockets
on the real cluster, a follower hands on to each subscriber only the jobs they may see."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis

from resolvers.events import jobs_by_id
from resolvers.poll_delta import make_delta, touched
from resolvers.shared import SharedState
from resolvers.shared_codec import encode_delta
from resolvers.shared_poll import Changed, SharedPolls, Whole
from resolvers.snapshot import Need, Snapshot
from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.resolvers.test_poll_delta import next_poll
from tests.resolvers.test_shared_codec import real_snapshot
from tests.server.test_mutations import SUBMIT, scancel
from tests.server.test_visibility import HELD, call
from tests.support.app import app_client
from tests.support.redis_server import RedisServer
from tests.support.scenario import slurm
from tests.support.ws import Connection, Subscription, serving
from transport.local import LocalTransport

INTERVAL = 0.3
# Both replicas of a test serve from this process's one event loop. The poll lease lasted 1.25
# intervals (375 ms at 0.3 s): a loop stall of ~0.4 s under CI load (two suites on two CPUs) let
# the follower take the lease, after which it led and read no more publications, so the
# follower's count of deltas this test waits for stayed 0 (the other replica, now following,
# applied them: tests/server/test_poll_lease.py). The lease now lasts 1 s at least; a test that
# needs one replica to stay the follower still polls at this pace, for a 1.25 s lease.
STEADY_INTERVAL = 1.0
SEQ_KEY = "slurm-graphql:{local}:poll-seq"
DELTA_KEY = "slurm-graphql:{local}:poll-delta"


@pytest.fixture
def shared_redis(redis_server: RedisServer) -> RedisServer:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server


@pytest.fixture
async def pair(shared_redis: RedisServer) -> AsyncIterator[tuple[SharedPolls, SharedPolls]]:
    """Two replicas' parts in polling cluster `local`, each with a Redis client of its own."""
    states = [SharedState(Redis.from_url(shared_redis.url)) for _ in range(2)]
    try:
        yield SharedPolls(states[0], "local", 1.0, "a"), SharedPolls(states[1], "local", 1.0, "b")
    finally:
        for state in states:
            await state.aclose()


async def publish(leader: SharedPolls, before: Snapshot | None, after: Snapshot) -> int:
    """What Poller._poll publishes: `after` as its delta against `before` (publication
    leader.held), and whole."""
    old = jobs_by_id(before.jobs) if before is not None else None
    new = jobs_by_id(after.jobs)
    differ = touched(old, new, None, None)
    seq = await leader.publish(after, make_delta(leader.held, after, new, None, differ))
    leader.held = seq
    return seq


def jobs_only(snapshot: Snapshot) -> Snapshot:
    return Snapshot("local", snapshot.taken_at, Need.JOBS, jobs=snapshot.jobs)


async def test_a_follower_applies_deltas_and_reads_a_missed_poll_whole(
    pair: tuple[SharedPolls, SharedPolls],
) -> None:
    """The first publication a follower takes is whole; then, holding each one's base, it gets
    deltas (the rows that changed, not the queue); after missing two it reads the latest
    whole, so nothing between is lost."""
    leader, follower = pair
    assert await leader.lead()
    first = jobs_only(real_snapshot())
    second = jobs_only(next_poll(first))
    third = jobs_only(next_poll(second))
    seq = await publish(leader, None, first)
    taken = await follower.latest()
    assert isinstance(taken, Whole) and taken.seq == seq and taken.snapshot.jobs == first.jobs
    follower.held = taken.seq  # what Poller._hand_on does once its subscribers have it
    await publish(leader, first, second)
    changed = await follower.latest()
    assert isinstance(changed, Changed) and changed.delta.base == seq
    assert 0 < len(changed.delta.jobs) < len(second.jobs or ())
    follower.held = changed.seq
    assert await follower.latest() is None  # nothing new
    await publish(leader, second, third)
    last = await publish(leader, third, second)
    missed = await follower.latest()
    assert isinstance(missed, Whole) and missed.seq == last
    assert missed.snapshot.jobs == second.jobs
    assert (follower.deltas, follower.wholes) == (1, 2)


async def test_a_publication_with_another_fencing_token_is_dropped(
    pair: tuple[SharedPolls, SharedPolls],
    shared_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Someone with access to Redis publishes a poll as a leader would, but with an epoch that
    is not the current one (a deposed leader's, or made up): the follower hands nothing on,
    logs and counts it once, and takes the real leader's next publication."""
    leader, follower = pair
    assert await leader.lead()
    first = jobs_only(real_snapshot())
    await publish(leader, None, first)
    taken = await follower.latest()
    assert isinstance(taken, Whole)
    follower.held = taken.seq
    forged_poll = jobs_only(next_poll(first))
    rows = jobs_by_id(forged_poll.jobs)
    forged = make_delta(taken.seq, forged_poll, rows, None, touched(None, rows, None, None))
    with redis.Redis.from_url(shared_redis.url) as client:
        seq = client.incr(SEQ_KEY)
        client.set(DELTA_KEY, f"{seq}:".encode() + encode_delta(forged, "local", leader.epoch + 7))
    assert await follower.latest() is None
    assert await follower.latest() is None  # refused once, not at every look
    assert follower.state.corrupt == 1
    assert "another fencing token" in caplog.text
    second = jobs_only(next_poll(first))
    await publish(leader, first, second)
    real = await follower.latest()
    assert isinstance(real, Changed) and real.seq == seq + 1


async def test_a_deposed_leader_publishes_nothing(
    pair: tuple[SharedPolls, SharedPolls], shared_redis: RedisServer
) -> None:
    """A leader whose lease went to another replica (it paused past it) cannot publish: the
    script checks its token and epoch, and it learns it no longer leads."""
    old, new = pair
    assert await old.lead()
    with redis.Redis.from_url(shared_redis.url) as client:
        client.delete("slurm-graphql:{local}:poll-leader")  # its lease lapsed
    assert await new.lead()
    snapshot = jobs_only(real_snapshot())
    assert await publish(old, None, snapshot) == 0
    assert old.epoch == 0
    assert await publish(new, None, snapshot) == 1


@pytest.fixture
async def jobs(unix_users: None) -> AsyncIterator[dict[str, str]]:
    """A held job of alice's and one of bob's, submitted through the API: their display ids."""
    made: dict[str, str] = {}
    async with app_client(
        Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS)), {"local": LocalTransport()}
    ) as client:
        for user in ("alice", "bob"):
            body = await call(client, user, SUBMIT, input=HELD)
            made[user] = body["data"]["submitJob"]["job"]["displayId"]
    try:
        yield made
    finally:
        for job in made.values():
            scancel(job)


FEED = "subscription { jobEvents { kind job { jobId user state } } }"
FOLLOW = "subscription($id: String!) { jobStateChanged(id: $id) { kind job { user state } } }"


async def until_deltas(url: str, interval: float, within: float = 30) -> None:
    """Until the follower at `url` has applied a publication as a delta (its /metrics)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            metrics = (await client.get("/metrics")).text
            if any(
                line.startswith('slurm_graphql_poller_publications_total{cluster="local",'
                                'read="delta"}') and float(line.split()[-1]) >= 1
                for line in metrics.splitlines()
            ):  # fmt: skip
                return
            assert time.monotonic() < deadline, "the follower applied no delta"
            await asyncio.sleep(interval / 3)


async def drain(subscription: Subscription, within: float) -> list[dict[str, Any]]:
    """Every event a subscription gets within `within` seconds, or until it completes."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await subscription.next(left)
        except TimeoutError:
            break
        if message.kind != "next":
            break
        events.append(next(iter(message.payload["data"].values())))
    return events


async def test_a_follower_hands_bob_none_of_alices_job_events_under_own(
    shared_redis: RedisServer, jobs: dict[str, str]
) -> None:
    """Under `own`, bob on the follower (polls applied as deltas) follows every job and alice's
    job by id while alice's job is released and cancelled: he gets what an unknown id gets and
    his own job's events, none of hers; alice, on the same follower, gets her job's end."""
    settings = Settings(
        poll_interval=STEADY_INTERVAL,
        cache_ttl=1.0,
        redis_url=shared_redis.url,
        tokens=parse_token_map(TOKENS),
        job_visibility="own",
    )
    carol = {"Authorization": "Bearer carol-token"}
    async with (
        serving(create_app(settings, {"local": LocalTransport()})) as one,
        Connection.open(one, payload=carol) as admin,
    ):
        await admin.subscribe(FEED)  # the first replica polls: it leads
        async with (
            serving(create_app(settings)) as two,
            Connection.open(two, payload={"Authorization": "Bearer bob-token"}) as bob,
            Connection.open(two, payload={"Authorization": "Bearer alice-token"}) as alice,
        ):
            feed = await bob.subscribe(FEED)
            theirs = await bob.subscribe(FOLLOW, id=jobs["alice"])
            mine = await alice.subscribe(FOLLOW, id=jobs["alice"])
            assert (await mine.next(30)).payload["data"]["jobStateChanged"]["kind"] == "SNAPSHOT"
            await until_deltas(two, STEADY_INTERVAL)
            slurm("scontrol", "release", jobs["alice"])
            await asyncio.sleep(3 * STEADY_INTERVAL)
            scancel(jobs["alice"])
            scancel(jobs["bob"])
            alices = await drain(mine, 30)
            bobs_feed = await drain(feed, 6 * STEADY_INTERVAL)
            bobs_follow = await drain(theirs, 1)
    assert alices and alices[-1]["job"]["state"] == "CANCELLED", alices
    seen = {event["job"]["jobId"] for event in bobs_feed if event["job"]}
    assert str(jobs["bob"]) in {str(job) for job in seen}, bobs_feed
    assert {event["job"]["user"] for event in bobs_feed if event["job"]} == {"bob"}, bobs_feed
    assert bobs_follow == [{"kind": "UNKNOWN", "job": None}], bobs_follow
    assert "alice" not in json.dumps([bobs_feed, bobs_follow])


async def test_the_bytes_a_replica_stored_are_not_decoded_again_and_others_are(
    shared_redis: RedisServer,
) -> None:
    """A replica that reads back the snapshot it stored itself (the poll leader taking up its
    own query's fetch) gets the snapshot it holds, not a second decoding; bytes another replica
    stored, even of the same queue, are decoded and served as theirs."""
    from resolvers.shared import SharedSnapshots
    from resolvers.shared_codec import encode

    stored = real_snapshot()
    fetched: list[Need] = []

    async def fetch_own(needs: Need) -> Snapshot:
        fetched.append(needs)
        return stored

    state = SharedState(Redis.from_url(shared_redis.url))
    try:
        shared = SharedSnapshots(state, "local", ttl=60.0, interval=1.0)
        generation = await shared.generation()
        assert generation is not None
        first, _, _ = await shared.fetch(Need.JOBS, generation, 60.0, fetch_own)
        again = await shared.peek(Need.JOBS, generation, 60.0)
        assert again is not None and again[0] is first is stored and len(fetched) == 1
        theirs = next_poll(stored)
        with redis.Redis.from_url(shared_redis.url) as client:
            client.set("slurm-graphql:{local}:snapshot", encode(theirs, generation), px=60_000)
        read = await shared.peek(Need.JOBS, generation, 60.0)
        assert read is not None and read[0] == theirs and read[0] is not stored
    finally:
        await state.aclose()
