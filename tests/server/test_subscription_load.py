"""The shared poller under load and under faults, on the real cluster: many subscribers cost one
squeue per interval, queries ride on its snapshots, a slow consumer is dropped alone, and a
controller restart is reported and recovered from."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from resolvers.events import EventKind, JobEventData, NodeEventData
from resolvers.mailbox import Mailbox
from resolvers.poller import PollerHub, SubscriberTooSlow
from resolvers.selection import JobCriteria
from resolvers.source import SnapshotSource
from resolvers.visibility import EVERYONE
from resolvers.watches import JobFeed
from server.app import create_app
from server.settings import Settings
from tests.support.live import StampingTransport, poller_tasks, slurm_cli, submit
from tests.support.scenario import Scenario
from tests.support.ws import Connection, serving
from transport.local import LocalTransport

LOCAL_CLUSTER = Path(__file__).resolve().parents[2] / "scripts" / "local-cluster"
INTERVAL = 0.3
STATE_CHANGED = """
subscription ($id: String!) {
  jobStateChanged(id: $id) { kind error { code } job { state exitCode } }
}"""


async def no_poller_left(within: float = 3) -> None:
    for _ in range(int(within / 0.05)):
        if not poller_tasks():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"poller tasks still running: {poller_tasks()}")


async def test_200_subscribers_cost_one_squeue_per_interval(slurm_cluster: str) -> None:
    """200 subscribers to 200 jobs cost one squeue per interval; gone, they leave no poller."""
    # Four connections of 50; one of them is dropped abruptly at the end.
    jobs = await asyncio.gather(
        *(submit("-J", "held", "--hold", "--wrap", "true") for _ in range(200))
    )
    transport = StampingTransport(LocalTransport())
    # 200 subscriptions from one anonymous client: above the per-client default of 100.
    settings = Settings(
        poll_interval=INTERVAL, max_subscriptions_per_connection=50, max_subscriptions_per_user=200
    )
    try:
        async with (
            serving(create_app(settings, transports={"local": transport})) as url,
            contextlib.AsyncExitStack() as stack,
        ):
            connections = [await stack.enter_async_context(Connection.open(url)) for _ in range(4)]
            subscriptions = [
                await connections[index % 4].subscribe(STATE_CHANGED, id=job)
                for index, job in enumerate(jobs)
            ]
            firsts = await asyncio.gather(*(s.next(20) for s in subscriptions))
            assert {f.payload["data"]["jobStateChanged"]["job"]["state"] for f in firsts} == {
                "PENDING"
            }
            calls, started = transport.calls, time.monotonic()
            await asyncio.sleep(10 * INTERVAL)
            batches = transport.batches[calls:]
            elapsed = time.monotonic() - started
            assert len(batches) <= elapsed / INTERVAL + 1
            assert all([argv[0] for argv in batch] == ["squeue"] for batch in batches)
            assert len(poller_tasks()) == 1
            connections[0].socket.transport.abort()  # a client that vanishes without closing
        await no_poller_left()
    finally:
        await slurm_cli("scancel", *jobs)


async def test_queries_within_the_poll_window_cost_no_round_trip(slurm_cluster: str) -> None:
    """Queries within the cache TTL are answered from the poller's snapshots."""
    # The first query may fetch: its datasets (jobs and nodes) are not polled until it asks.
    transport = StampingTransport(LocalTransport())
    settings = Settings(poll_interval=INTERVAL, cache_ttl=2.0, response_cache=False)
    query = {
        "query": "{ cluster { jobs(first: 3) { totalCount edges { node { jobId state } } } } }"
    }
    async with (
        serving(create_app(settings, transports={"local": transport})) as url,
        Connection.open(url) as connection,
        httpx.AsyncClient(base_url=url) as client,
    ):
        await connection.subscribe("subscription { jobEvents { kind } }")
        await client.post("/graphql", json=query)  # may fetch: its datasets are not polled yet
        polls = transport.calls
        for _ in range(100):  # until a poll starts after the query has finished
            if transport.calls >= polls + 2:
                break
            await asyncio.sleep(0.02)
        calls, started = transport.calls, time.monotonic()
        for _ in range(10):
            answer = (await client.post("/graphql", json=query)).json()
            assert answer["data"]["cluster"]["jobs"]["totalCount"] > 0
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
    assert transport.calls - calls <= elapsed / INTERVAL + 1
    assert all(len(batch) == 2 for batch in transport.batches[calls:])  # squeue + nodes polls


async def _collect(
    events: AsyncIterator[JobEventData | NodeEventData], into: list[JobEventData]
) -> None:
    async for event in events:
        assert isinstance(event, JobEventData)
        into.append(event)


def _snapshot_events(events: list[JobEventData]) -> int:
    return sum(1 for event in events if event.kind is EventKind.SNAPSHOT)


async def _until(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait until `condition` holds, however the event loop orders the tasks involved."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.02)


async def test_a_slow_consumer_is_dropped_and_the_others_are_not(
    slurm_cluster: str, scenario: Scenario
) -> None:
    """An overflowing subscriber is told and removed; another gets every event; polls go on."""
    transport = StampingTransport(LocalTransport())
    hub = PollerHub({"local": SnapshotSource("local", transport)}, 0.2, mailbox_size=3)
    fast: list[JobEventData] = []
    fast_task = asyncio.create_task(
        _collect(
            hub.follow(
                "local", JobFeed(JobCriteria(), Mailbox(10_000), initial=True, visibility=EVERYONE)
            ),
            fast,
        )
    )
    slow = hub.follow(
        "local", JobFeed(JobCriteria(), Mailbox(3), initial=True, visibility=EVERYONE)
    )
    try:
        # The first poll posts one SNAPSHOT event per job at once, more than the slow mailbox
        # holds, before its reader can run: its first read is the drop.
        with pytest.raises(SubscriberTooSlow):
            await asyncio.wait_for(anext(slow), 10)
        # The fast subscriber reads in a task of its own, which need not have run yet (from
        # Python 3.12, wait_for runs `anext` in this task): wait for what it was sent.
        await _until(lambda: _snapshot_events(fast) >= len(scenario.all_ids) > 3)
        # The snapshot comes whole and first; later polls may add other helpers' job changes.
        kinds = [event.kind for event in fast]
        first_change = next(
            (i for i, kind in enumerate(kinds) if kind is not EventKind.SNAPSHOT), None
        )
        if first_change is not None:
            assert EventKind.SNAPSHOT not in kinds[first_change:]
        polls = transport.calls
        await _until(lambda: transport.calls > polls)
        poller = hub.active()["local"]
        assert poller.watches == 1
    finally:
        fast_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fast_task
        await hub.aclose()


def _local_cluster(command: str) -> None:
    done = subprocess.run(
        [LOCAL_CLUSTER, command], capture_output=True, text=True, env=os.environ, check=False
    )
    # What the script said is the diagnosis (a CalledProcessError alone hid it in CI).
    assert done.returncode == 0, f"local-cluster {command}: {done.returncode}\n{done.stderr}"


async def test_a_controller_restart_is_reported_and_polling_recovers(slurm_cluster: str) -> None:
    """slurmctld restarting mid-stream: UNAVAILABLE, RECOVERED, then the job's COMPLETED."""
    job = await submit("-J", "outlives-ctld", "--wrap", "sleep 3")
    transport = StampingTransport(LocalTransport())
    settings = Settings(poll_interval=INTERVAL)
    try:
        async with (
            serving(create_app(settings, transports={"local": transport})) as url,
            Connection.open(url) as connection,
        ):
            subscription = await connection.subscribe(STATE_CHANGED, id=job)
            while (await subscription.next(20)).payload["data"]["jobStateChanged"]["job"][
                "state"
            ] != "RUNNING":
                pass
            await asyncio.to_thread(_local_cluster, "stop-ctld")
            down = (await subscription.next(10)).payload["data"]["jobStateChanged"]
            assert (down["kind"], down["error"]["code"]) == ("UNAVAILABLE", "SLURM_UNAVAILABLE")
            await asyncio.to_thread(_local_cluster, "start-ctld")
            rest = [m.payload for m in await subscription.until_complete(30)][:-1]
        kinds = [p["data"]["jobStateChanged"]["kind"] for p in rest]
        assert kinds[0] == "RECOVERED" and kinds[-1] == "CHANGED"
        last = rest[-1]["data"]["jobStateChanged"]["job"]
        assert (last["state"], last["exitCode"]) == ("COMPLETED", 0)
    finally:
        # Whatever happened above, later tests need a controller.
        await asyncio.to_thread(_local_cluster, "start-ctld")
