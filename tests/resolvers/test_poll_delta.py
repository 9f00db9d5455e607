"""A poll rebuilt from the leader's delta is the poll the leader made, and its subscribers hear
the same changes as from a whole diff (pure: resolvers/poll_delta.py, the delta's codec in
resolvers/shared_codec.py; the channel itself in tests/server/test_shared_polling.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from resolvers.events import diff_jobs, diff_nodes, jobs_by_id
from resolvers.poll_delta import (
    PollDelta,
    apply_delta,
    job_changes,
    make_delta,
    node_changes,
    row_differs,
    touched,
)
from resolvers.shared_codec import CorruptSharedValue, decode_delta, encode_delta
from resolvers.slurm.jobs import FIELD_SEPARATOR, STRUCTURED_FIELDS, JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.snapshot import Need, Snapshot
from tests.resolvers.test_shared_codec import real_snapshot

STATE = STRUCTURED_FIELDS.index("State")
PRIORITY = STRUCTURED_FIELDS.index("PriorityLong")


def with_field(row: JobRow, index: int, value: str) -> JobRow:
    fields = row.structured.split(FIELD_SEPARATOR)
    fields[index] = value
    return row._replace(structured=FIELD_SEPARATOR.join(fields))


def reboundaried(row: JobRow, separator: str) -> JobRow:
    """The same row as another squeue call prints it: its own free-text boundary."""
    parts = row.free_text.split(row.free_separator)
    return row._replace(free_text=separator.join(parts), free_separator=separator)


def next_poll(before: Snapshot) -> Snapshot:
    """Every row as a new squeue call prints it, one job running, one only reprioritised, one
    gone, one new, and a node drained."""
    assert before.jobs
    rows = [reboundaried(row, "\x1fnext0boundary") for row in before.jobs]
    rows[0] = with_field(rows[0], STATE, "RUNNING")
    rows[1] = with_field(rows[1], PRIORITY, "12345")
    del rows[2]
    rows.append(rows[-1]._replace(job_id=999_999, display_id="999999"))
    nodes = list(before.nodes or ())
    if nodes:
        nodes[0] = dataclasses.replace(nodes[0], state_flags=(*nodes[0].state_flags, "DRAIN"))
    return Snapshot("local", before.taken_at + 1, before.needs, before.version,
                    partitions=before.partitions, nodes=before.nodes and tuple(nodes),
                    jobs=tuple(rows))  # fmt: skip


def by_name(snapshot: Snapshot) -> dict[str, NodeRecord]:
    return {node.name: node for node in snapshot.nodes or ()}


def test_a_poll_rebuilt_from_its_delta_holds_the_leaders_rows() -> None:
    """Applied to the rows of its base, a delta gives every job and node of the new poll, a
    priority change included (which subscribers do not hear, but queries of the rows read), and
    only the rows that differ travel: not those a new squeue call merely separated anew."""
    before = real_snapshot()
    after = next_poll(before)
    jobs_before, jobs_after = jobs_by_id(before.jobs), jobs_by_id(after.jobs)
    differ = touched(jobs_before, jobs_after, by_name(before), by_name(after))
    delta = make_delta(7, after, jobs_after, by_name(after), differ)
    assert len(delta.jobs) == 3 and len(delta.jobs_gone) == 1 and len(delta.nodes) == 1
    applied = apply_delta("local", jobs_before, by_name(before), delta)
    assert applied.jobs is not None and applied.nodes is not None
    assert applied.jobs.keys() == jobs_after.keys()
    assert not any(row_differs(applied.jobs[i], row) for i, row in jobs_after.items())
    assert applied.nodes == by_name(after)
    assert applied.snapshot.taken_at == after.taken_at
    assert applied.snapshot.partitions == after.partitions
    assert applied.snapshot.version == after.version


def test_the_changes_of_a_delta_are_those_of_a_whole_diff() -> None:
    """Subscribers hear the same job and node changes, diffed over the delta's rows alone, as
    a diff of every row would give: the new job, the one running, the one gone, the node."""
    before, after = real_snapshot(), next_poll(real_snapshot())
    jobs_before, jobs_after = jobs_by_id(before.jobs), jobs_by_id(after.jobs)
    differ = touched(jobs_before, jobs_after, by_name(before), by_name(after))
    assert job_changes(jobs_before, jobs_after, differ.jobs) == diff_jobs(jobs_before, jobs_after)
    assert len(diff_jobs(jobs_before, jobs_after)) == 3
    nodes = node_changes(by_name(before), by_name(after), differ.nodes)
    assert nodes == diff_nodes(by_name(before), by_name(after)) and len(nodes) == 1


def test_a_dataset_the_base_lacks_travels_whole() -> None:
    """A poll that asks for nodes when the one before did not: the delta holds every node, and
    the follower's rebuilt poll has them all."""
    full = real_snapshot()
    jobs = jobs_by_id(full.jobs)
    differ = touched(jobs, jobs, None, by_name(full))
    delta = make_delta(3, full, jobs, by_name(full), differ)
    assert delta.jobs == () and len(delta.nodes) == len(full.nodes or ())
    applied = apply_delta("local", jobs, None, delta)
    assert applied.nodes == by_name(full) and applied.jobs == jobs


def test_a_delta_round_trips_with_its_epoch() -> None:
    before, after = real_snapshot(), next_poll(real_snapshot())
    jobs_before, jobs_after = jobs_by_id(before.jobs), jobs_by_id(after.jobs)
    differ = touched(jobs_before, jobs_after, by_name(before), by_name(after))
    delta = make_delta(7, after, jobs_after, by_name(after), differ)
    assert decode_delta(encode_delta(delta, "local", 5), "local") == (delta, 5)


def delta_body() -> dict[str, Any]:
    before, after = real_snapshot(), next_poll(real_snapshot())
    differ = touched(jobs_by_id(before.jobs), jobs_by_id(after.jobs), by_name(before), None)
    delta = make_delta(7, after, jobs_by_id(after.jobs), None, differ)
    loaded: dict[str, Any] = json.loads(encode_delta(delta, "local", 5))
    return loaded


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    good = delta_body()
    return [
        ("another cluster", {**good, "cluster": "other"}),
        ("a snapshot, not a delta", {**good, "kind": "snapshot"}),
        ("a future format", {**good, "format": 2}),
        ("an epoch that is text", {**good, "epoch": "5"}),
        ("a negative base", {**good, "base": -1}),
        ("needs beyond the known flags", {**good, "needs": 1 << 10}),
        ("partitions held but missing", {**good, "partitions": None}),
        ("a job id that is text", {**good, "jobs": [["1", "1", "", "", ""]]}),
        ("a gone job that is text", {**good, "jobs_gone": ["1"]}),
        ("gone nodes that are not names", {**good, "nodes_gone": [1]}),
        ("a taken_at that is text", {**good, "taken_at": "now"}),
    ]


@pytest.mark.parametrize(("case", "value"), _mutations(), ids=[c for c, _ in _mutations()])
def test_a_delta_not_of_our_shape_is_refused(case: str, value: dict[str, Any]) -> None:
    """Each field of a delta is checked as a snapshot's are: a planted value is refused."""
    with pytest.raises(CorruptSharedValue):
        decode_delta(json.dumps(value).encode(), "local")


def test_a_delta_too_large_is_refused_unread() -> None:
    with pytest.raises(CorruptSharedValue, match="over 1000 bytes"):
        decode_delta(b" " * 2000, "local", max_bytes=1000)


def test_an_empty_delta_decodes() -> None:
    """A poll where nothing changed travels as no rows at all."""
    empty = PollDelta(4, 1.0, Need.JOBS, None, None, (), (), (), ())
    assert decode_delta(encode_delta(empty, "local", 1), "local") == (empty, 1)


def test_a_poll_begun_late_is_followed_a_whole_interval_after_it() -> None:
    """The leader's schedule: on time, every interval; a poll begun 0.6 s late pushes the next
    one to an interval after its start (the old schedule put it 0.4 s after: two squeues in one
    interval); a poll longer than the interval is followed at once."""
    from resolvers.poller import next_poll

    assert next_poll(10.0, 10.0, 10.1, 1.0) == 11.0
    assert next_poll(10.0, 10.6, 10.7, 1.0) == 11.6
    assert next_poll(10.0, 10.0, 11.5, 1.0) == 11.5
