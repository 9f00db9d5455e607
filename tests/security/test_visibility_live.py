"""SLURM_GRAPHQL_JOB_VISIBILITY=own, attacked through subscriptions: as bob, over WebSocket and
server-sent events, on the real cluster where alice has running, held and finished jobs beside
his. Events are made from one poll shared by every subscriber; what reaches bob must be his view
of it: no job of alice's at any depth of an event, initial snapshots and live changes alike, and
following her job ends exactly as following a job that does not exist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import create_app
from tests.support.scenario import sbatch, slurm, wait_for_state
from tests.support.visibility import (
    EVERYTHING,
    Jobs,
    assert_nothing_of_alice,
    missing_like,
    modulo,
    own_settings,
    roomy_node,
)
from tests.support.visibility import jobs as jobs  # the module's fixture
from tests.support.ws import Connection, Message, Subscription, serving

pytestmark = pytest.mark.cluster

BOB = {"Authorization": "Bearer bob-token"}

NODE_EVENTS = """
subscription($initial: Boolean!) { nodeEvents(initial: $initial) { kind name node { name
  jobs { displayId jobId name user }
  partitions { name jobs(first: 50) {
    totalCount edges { cursor node { displayId name user } } } } } } }"""
JOB_EVENTS = (
    """subscription($filter: JobFilter, $initial: Boolean!) {
  jobEvents(filter: $filter, initial: $initial) {
    kind jobId previousState job { ...Everything } } }"""
    + EVERYTHING
)
STATE_CHANGED = (
    """subscription($id: String!) { jobStateChanged(id: $id) {
  kind jobId previousState source error { code } job { ...Everything } } }"""
    + EVERYTHING
)


def naming_her(jobs: Jobs) -> list[dict[str, Any]]:
    """jobEvents filters that name alice, her jobs' name or ids."""
    return [
        {"users": ["alice"]},
        {"names": [jobs.name]},
        {"ids": list(jobs.alice_forms)},
        {"users": ["alice", "bob"], "names": [jobs.name]},
    ]


@pytest.fixture
async def url(unix_users: None) -> AsyncIterator[str]:
    """The app under `own` served on loopback, polling every 0.3 s."""
    async with serving(create_app(own_settings(poll_interval=0.3))) as served:
        yield served


async def gathered(subscription: Subscription, within: float, count: int = 0) -> list[Message]:
    """What `subscription` delivers in `within` seconds (or its first `count` messages)."""
    messages: list[Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not count or len(messages) < count:
                messages.append(await subscription.next(within))
    return messages


def text(messages: list[Message]) -> str:
    return json.dumps([(m.kind, m.payload) for m in messages])


def job_ids(messages: list[Message]) -> set[str]:
    return {m.payload["data"]["jobEvents"]["jobId"] for m in messages if m.payload.get("data")}


async def test_initial_snapshots_over_websocket_show_nothing_of_hers(url: str, jobs: Jobs) -> None:
    """nodeEvents(initial) with each node's jobs and its partitions' jobs, jobEvents(initial)
    with each job's nodes' jobs, and feeds filtered on alice, her name or her ids: bob's jobs
    only, and nothing at all for the filters naming her."""
    async with Connection.open(url, payload=BOB) as ws:
        nodes = await ws.subscribe(NODE_EVENTS, initial=True)
        feed = await ws.subscribe(JOB_EVENTS, initial=True)
        hers = [await ws.subscribe(JOB_EVENTS, filter=f, initial=True) for f in naming_her(jobs)]
        node_events = await gathered(nodes, 15, count=4)
        feed_events, *her_events = await asyncio.gather(
            gathered(feed, 4), *(gathered(s, 4) for s in hers)
        )
    assert len(node_events) == 4, node_events
    assert {m.payload["data"]["nodeEvents"]["kind"] for m in node_events} == {"SNAPSHOT"}
    assert_nothing_of_alice(text(node_events), jobs)
    assert jobs.bob_running in text(node_events)  # his job, on her node, is there
    assert {jobs.bob_running, jobs.bob_held} <= job_ids(feed_events)
    assert_nothing_of_alice(text(feed_events), jobs)
    assert her_events == [[]] * len(hers)


async def test_following_her_job_over_websocket_ends_as_for_a_missing_one(
    url: str, jobs: Jobs
) -> None:
    """jobStateChanged on each of her jobs (running, held array, one task, finished): the
    messages a job nobody knows gets, to the letter (modulo the id)."""
    async with Connection.open(url, payload=BOB) as ws:

        async def follow(job_id: str) -> list[Message]:
            return await (await ws.subscribe(STATE_CHANGED, id=job_id)).until_complete(30)

        ids = [*jobs.alice_forms, *(missing_like(i) for i in jobs.alice_forms)]
        answers = dict(zip(ids, await asyncio.gather(*(follow(i) for i in ids)), strict=True))
    for job_id in jobs.alice_forms:
        theirs, missing = answers[job_id], answers[missing_like(job_id)]
        assert_nothing_of_alice(modulo(text(theirs), job_id), jobs)  # the id asked is echoed
        assert modulo(text(theirs), job_id) == modulo(text(missing), missing_like(job_id))
        assert [m.kind for m in theirs] == ["next", "complete"]
        assert theirs[0].payload["data"]["jobStateChanged"]["kind"] == "UNKNOWN"


async def test_live_changes_over_websocket_show_nothing_of_hers(url: str, jobs: Jobs) -> None:
    """While alice starts and cancels a job on a node, bob's feeds (jobs, nodes, and one on
    her name) carry his own change and nothing of hers."""
    async with Connection.open(url, payload=BOB) as ws:
        feed = await ws.subscribe(JOB_EVENTS, initial=False)
        nodes = await ws.subscribe(NODE_EVENTS, initial=False)
        named = await ws.subscribe(JOB_EVENTS, filter={"names": [jobs.name]}, initial=False)
        await asyncio.sleep(1.0)  # primed: the feeds follow changes from here
        node = await asyncio.to_thread(roomy_node)
        new = await asyncio.to_thread(
            sbatch,
            "-J",
            jobs.name,
            "-p",
            "batch",
            f"--nodelist={node}",
            "--wrap",
            "sleep 600",
            user="alice",
        )
        try:
            await asyncio.to_thread(wait_for_state, new, "RUNNING", 60)
            await asyncio.sleep(1.0)
        finally:
            await asyncio.to_thread(slurm, "scancel", new)
        await asyncio.to_thread(slurm, "scancel", jobs.bob_held)
        events, node_events, named_events = await asyncio.gather(
            gathered(feed, 3), gathered(nodes, 3), gathered(named, 3)
        )
    everything = text(events) + text(node_events) + text(named_events)
    assert_nothing_of_alice(everything, jobs)
    assert not re.search(rf"(?<![0-9]){new}(?![0-9])", everything)
    assert jobs.bob_held in job_ids(events)  # his own change did arrive
    assert named_events == []


async def sse(url: str, query: str, within: float, count: int = 0, **variables: Any) -> str:
    """A subscription over server-sent events, as bob: the raw `next` payloads it sent in
    `within` seconds (or its first `count`), up to `complete`."""
    body = {"query": query, "variables": variables}
    headers = {"Accept": "text/event-stream", **BOB}
    frames: list[str] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as client,
            client.stream("POST", "/graphql", json=body, headers=headers) as response,
        ):
            assert response.status_code == 200
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\r\n\r\n" in buffer:
                    frame, buffer = buffer.split("\r\n\r\n", 1)
                    if frame.startswith("event: complete"):
                        return
                    if frame.startswith("event: next"):
                        frames.append(frame.split("\r\n", 1)[1].removeprefix("data: "))
                    if count and len(frames) >= count:
                        return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), within)
    return "\n".join(frames)


async def test_subscriptions_over_server_sent_events_show_nothing_of_hers(
    url: str, jobs: Jobs
) -> None:
    """The same over SSE: initial node and job snapshots hold only bob's jobs, feeds naming
    her send nothing, and following her job sends what a missing id gets."""
    # The streams at once (each its own request and its own wait), as a client may open them:
    # one after the other they only added their waits up.
    node_events, feed, *named = await asyncio.gather(
        sse(url, NODE_EVENTS, 15, count=4, initial=True),
        sse(url, JOB_EVENTS, 4, initial=True),
        *(sse(url, JOB_EVENTS, 3, filter=f, initial=True) for f in naming_her(jobs)),
    )
    assert node_events.count('"nodeEvents"') == 4, node_events
    assert jobs.bob_running in node_events
    assert jobs.bob_running in feed
    for stream in (node_events, feed):
        assert_nothing_of_alice(stream, jobs)
    assert named == [""] * len(naming_her(jobs))
    ids = [*jobs.alice_forms, *(missing_like(i) for i in jobs.alice_forms)]
    followed = await asyncio.gather(*(sse(url, STATE_CHANGED, 30, id=i) for i in ids))
    answers = dict(zip(ids, followed, strict=True))
    for job_id in jobs.alice_forms:
        theirs, missing = answers[job_id], answers[missing_like(job_id)]
        assert '"UNKNOWN"' in theirs
        assert_nothing_of_alice(modulo(theirs, job_id), jobs)  # the id asked is echoed
        assert modulo(theirs, job_id) == modulo(missing, missing_like(job_id))
