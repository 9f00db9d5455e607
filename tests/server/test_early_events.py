"""A poll's events do not wait for another job's look-up (resolvers/poller.py `_hand_on`): a
subscriber whose job is in the poll hears of it while the poller still asks scontrol and sacct
how a job that is not in squeue stands, on the real cluster."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from tests.server.test_mutations import scancel
from tests.support.counting import CountingTransport
from tests.support.live import PurgingTransport, slurm_cli, submit
from tests.support.scenario import Scenario
from tests.support.ws import Connection, serving
from transport.base import Command, CommandResult
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

INTERVAL = 0.3
LOOKUP_SECONDS = 3.0
FOLLOW = "subscription ($id: String!) { jobStateChanged(id: $id) { kind at job { state } } }"


async def known_to_accounting(job_id: str, within: float = 30) -> None:
    """Wait until sacct lists `job_id` (slurmdbd records a job shortly after its submission)."""
    deadline = time.monotonic() + within
    argv = ["sacct", "--noheader", "--allocations", "--format=JobID", f"--jobs={job_id}"]
    while True:
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
        if job_id in done.stdout.split():
            return
        assert time.monotonic() < deadline, f"sacct never listed {job_id}"
        await asyncio.sleep(0.2)


class SlowLookups(PurgingTransport):
    """The real cluster, where a look-up of jobs not in squeue (scontrol, sacct) answers
    LOOKUP_SECONDS late, as on a loaded head node; notes when each one began and ended
    (time.time()): one poller, so one at a time."""

    def __init__(self) -> None:
        super().__init__(LocalTransport())
        self.lookups_began: list[float] = []
        self.lookups_ended: list[float] = []

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        if not any(command.argv[0] in ("scontrol", "sacct") for command in commands):
            return await super().run(commands)
        self.lookups_began.append(time.time())
        try:
            await asyncio.sleep(LOOKUP_SECONDS)
            return await super().run(commands)
        finally:
            self.lookups_ended.append(time.time())

    def looking_up(self, at: float) -> bool:
        """Whether a look-up was under way at `at` (one may still be, unfinished)."""
        ends = self.lookups_ended + [float("inf")] * (
            len(self.lookups_began) - len(self.lookups_ended)
        )
        return any(began <= at <= end for began, end in zip(self.lookups_began, ends, strict=True))


async def test_a_job_in_the_poll_is_not_held_up_by_another_jobs_look_up(
    slurm_cluster: str,
) -> None:
    """One subscriber follows a held job that squeue no longer lists (purged here; accounting
    still knows it, PENDING), so every poll looks it up, slowly; another follows a job that
    is released: its RUNNING event comes while that look-up runs, not after it."""
    transport = SlowLookups()
    hidden = await submit("-J", "hidden", "--hold", "--wrap", "true")
    held = await submit("-J", "released", "--hold", "--wrap", "sleep 30")
    transport.purge(hidden)
    try:
        await known_to_accounting(hidden)
        app = create_app(Settings(poll_interval=INTERVAL, cache_ttl=1.0), {"local": transport})
        async with serving(app) as url, Connection.open(url) as connection:
            looked_up = await connection.subscribe(FOLLOW, id=hidden)
            first = (await looked_up.next(30)).payload["data"]["jobStateChanged"]
            assert (first["kind"], first["job"]["state"]) == ("SNAPSHOT", "PENDING"), first
            released = await connection.subscribe(FOLLOW, id=held)
            await released.next(30)
            await slurm_cli("scontrol", "release", held)
            while True:
                message = await released.next(30)
                event = message.payload["data"]["jobStateChanged"]
                if event["job"]["state"] != "PENDING":
                    break
            polled = datetime.fromisoformat(event["at"]).timestamp()
    finally:
        scancel(hidden)
        scancel(held)
    assert event["job"]["state"] == "RUNNING", event
    assert message.received - polled < LOOKUP_SECONDS / 2, (message.received, polled)
    assert transport.looking_up(message.received), (message.received, transport.lookups_began)


async def test_a_poll_fetches_what_queries_read_lately_though_their_snapshot_expired(
    scenario: Scenario,
) -> None:
    """A cache TTL shorter than the poll interval, so every poll finds the queries' snapshot
    expired: the polls while a client lists jobs with their nodes still fetch the nodes with
    the jobs (they fetched the jobs alone, and each next query fetched the queue again)."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(poll_interval=INTERVAL, cache_ttl=INTERVAL / 3)
    query = "{ cluster { jobs(first: 5) { edges { node { jobId nodes { name } } } } } }"
    async with (
        serving(create_app(settings, {"local": transport})) as url,
        Connection.open(url) as connection,
        httpx.AsyncClient(base_url=url) as client,
    ):
        subscription = await connection.subscribe(FOLLOW, id=scenario.held)
        await subscription.next(30)
        asked = len(transport.batches)
        deadline = time.monotonic() + 6 * INTERVAL
        while time.monotonic() < deadline:
            response = await client.post("/graphql", json={"query": query})
            assert "errors" not in response.json(), response.text
            # Less often than the TTL: a poll finds the queries' snapshot expired.
            await asyncio.sleep(4 * INTERVAL / 3)
        fetches = [b for b in transport.batches[asked:] if any(a[0] == "squeue" for a in b)]
    without_nodes = [b for b in fetches if not any(a[0] == "scontrol" for a in b)]
    # At most the poll that ran before the first query answered: no queue fetched without
    # the nodes, then again with them.
    assert len(without_nodes) <= 1, fetches
