"""A snapshot holds nothing a reader cannot see: its indexes and views are fields, and a view
shares indexes with its snapshot only when it holds the same jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from bench.synthetic import synthetic_squeue
from resolvers.identity import Identity
from resolvers.selection import JobCriteria
from resolvers.slurm.jobs import RECORD_SEPARATOR
from resolvers.snapshot import Need, Snapshot, fetch_snapshot
from resolvers.visibility import EVERYONE, Visibility
from tests.security.test_visibility import golden_rows
from tests.support.counting import MockTransport
from transport.base import Command, CommandResult


def used(snapshot: Snapshot) -> None:
    """Ask for every index a request may derive."""
    _ = (snapshot.partitions_by_name, snapshot.nodes_by_name, snapshot.partitions_of_node)
    _ = (snapshot.jobs_sorted, snapshot.jobs_on_node)
    snapshot.jobs_matching(JobCriteria(states=frozenset({"RUNNING"})))


def test_everything_a_snapshot_keeps_is_one_of_its_fields() -> None:
    """No cache hides in the instance's __dict__: after every index and a view were asked for,
    the instance holds its declared fields and nothing else."""
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(golden_rows()))
    used(snapshot)
    view = snapshot.seen_by(Visibility.of(Identity("bob"), own_jobs_only=True))
    used(view)
    declared = {field.name for field in dataclasses.fields(Snapshot)}
    assert set(vars(snapshot)) == declared
    assert set(vars(view)) == declared
    assert snapshot.indexes.jobs_sorted is not None and snapshot.indexes.selections


def test_a_view_shares_indexes_only_when_it_holds_the_same_jobs() -> None:
    """EVERYONE's view reuses what its snapshot derived; bob's view under `own` derives its own,
    so no index of everyone's jobs ever answers for bob."""
    rows = tuple(golden_rows())
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=rows)
    used(snapshot)
    assert snapshot.seen_by(EVERYONE).indexes is snapshot.indexes
    bobs = snapshot.seen_by(Visibility.of(Identity("bob"), own_jobs_only=True))
    assert bobs.indexes is not snapshot.indexes
    assert {row.user for row in bobs.jobs_sorted} <= {"bob"}
    assert len(snapshot.jobs_sorted) == len(rows)
    assert snapshot.seen_by(Visibility.of(Identity("bob"), own_jobs_only=True)) is bobs


async def test_a_whole_queue_is_parsed_off_the_event_loop() -> None:
    """While 60,000 jobs are parsed and indexed (several hundred ms of CPU), the event loop
    still runs other requests' callbacks every few ms: the parse happens in a worker thread.
    A fake transport: the real cluster here cannot hold 60,000 jobs in a test's time."""
    made = synthetic_squeue(60_000, "b0undary")  # made up front: not on the loop's clock

    def answer(command: Command) -> CommandResult:
        boundary = command.argv[-1].rsplit(RECORD_SEPARATOR, 1)[1]
        return CommandResult(command.argv, made.replace("b0undary", boundary), "", 0)

    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    snapshot = await fetch_snapshot("local", MockTransport(answer), Need.JOBS)
    took = time.perf_counter() - started
    done.set()
    await ticking
    assert len(snapshot.jobs or ()) == 60_000
    assert snapshot.indexes.jobs_by_id is not None  # derived in the thread, not by a request
    assert snapshot.job("100042") is not None
    # On the loop, the parse would be one gap as long as the whole fetch. In a thread, the loop
    # gets the GIL back every few ms; a busy machine may still deschedule the whole process for
    # a while, so no single gap may hold most of the fetch, and the loop must have run often.
    assert max(gaps) < took * 0.6, (max(gaps), took)
    assert len(gaps) >= 20, (len(gaps), took)
