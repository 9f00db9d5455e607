"""Diffs between snapshots and what each kind of watch makes of them. Pure: rows are real
squeue output (the golden capture), states changed by hand where a test needs a change."""

from __future__ import annotations

import json
from pathlib import Path

from resolvers.events import EventKind, JobEventData, diff_jobs, jobs_by_id, row_changed
from resolvers.mailbox import Finished, Mailbox, Overflowed
from resolvers.selection import JobCriteria
from resolvers.slurm.jobs import FIELD_SEPARATOR, STRUCTURED_FIELDS, JobRow, parse_squeue
from resolvers.snapshot import Need, Snapshot
from resolvers.visibility import EVERYONE
from resolvers.watches import JobFeed, JobWatch, PollUpdate

SQUEUE = Path(__file__).resolve().parent.parent / "golden" / "22.05" / "squeue"


def rows(boundary: str = "") -> list[JobRow]:
    """The golden scenario's rows, framed with `boundary` (as if from another squeue call)."""
    argv = json.loads((SQUEUE / "scenario.argv.json").read_text())["argv"]
    captured = next(a for a in argv if a.startswith("--Format=")).rsplit("\x1e", 1)[1]
    text = (SQUEUE / "scenario.stdout").read_text(errors="replace")
    return parse_squeue(text.replace(captured, boundary or captured), boundary or captured)


def with_field(row: JobRow, field: str, value: str) -> JobRow:
    fields = row.structured.split(FIELD_SEPARATOR)
    fields[STRUCTURED_FIELDS.index(field)] = value
    return row._replace(structured=FIELD_SEPARATOR.join(fields))


def update(jobs: list[JobRow], previous: list[JobRow] | None) -> PollUpdate:
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(jobs))
    now = jobs_by_id(tuple(jobs))
    changes = diff_jobs(jobs_by_id(tuple(previous)), now) if previous is not None else None
    return PollUpdate(snapshot, now, None, changes, None)


def test_a_new_boundary_or_priority_is_not_a_change() -> None:
    """The same jobs from another squeue call, priorities drifted: nothing changed."""
    before, after = rows(), rows("another0boundary")
    after = [with_field(r, "PriorityLong", "1") for r in after]
    assert not any(row_changed(b, a) for b, a in zip(before, after, strict=True))
    assert diff_jobs(jobs_by_id(tuple(before)), jobs_by_id(tuple(after))) == []


def test_added_changed_and_gone_jobs_are_found() -> None:
    """A job appears, one changes state, one leaves squeue."""
    before = rows()
    after = [with_field(before[0], "State", "BOOT_FAIL"), *before[2:]]
    extra = before[1]._replace(job_id=999_999)
    changes = {
        c.job_id: c for c in diff_jobs(jobs_by_id(tuple(before)), jobs_by_id((*after, extra)))
    }
    assert changes[999_999].before is None
    changed = changes[before[0].job_id].after
    assert changed is not None and changed.state == "BOOT_FAIL"
    assert changes[before[1].job_id].after is None
    assert len(changes) == 3


def drain(mailbox: Mailbox) -> list[JobEventData]:
    """The events posted so far (a final Finished marker left out)."""
    items = []
    while mailbox.qsize():
        item = mailbox._queue.get_nowait()
        if not isinstance(item, Finished):
            assert isinstance(item, JobEventData)
            items.append(item)
    return items


def test_a_feed_adds_and_removes_as_jobs_enter_and_leave_its_filter() -> None:
    """Filter RUNNING: a job stopping is REMOVED with its new state; one starting is ADDED."""
    before = rows()
    running = next(r for r in before if r.fields().state == "RUNNING")
    pending = next(r for r in before if r.fields().state == "PENDING")
    after = [with_field(running, "State", "COMPLETED") if r is running else r for r in before]
    after = [with_field(pending, "State", "RUNNING") if r is pending else r for r in after]
    feed = JobFeed(JobCriteria(states=frozenset({"RUNNING"})), Mailbox(100), visibility=EVERYONE)
    feed.on_poll(update(before, None))
    feed.on_poll(update(after, before))
    events = {e.job_id: e for e in drain(feed.mailbox)}
    stopped, started = events[running.display_id], events[pending.display_id]
    assert (stopped.kind, stopped.previous_state) == (EventKind.REMOVED, "RUNNING")
    assert stopped.record is not None and stopped.record.state == "COMPLETED"
    assert (started.kind, started.previous_state) == (EventKind.ADDED, "PENDING")


def test_a_job_watch_reports_state_changes_only_and_finishes_at_the_end() -> None:
    """SNAPSHOT first; a change of reason alone is not news; a terminal state finishes it."""
    before = rows()
    pending = next(r for r in before if r.fields().state == "PENDING")
    watch = JobWatch(str(pending.job_id), Mailbox(100), visibility=EVERYONE)
    watch.prime(update(before, None))
    reason = [with_field(r, "Reason", "Priority") if r is pending else r for r in before]
    watch.on_poll(update(reason, before))
    done = [with_field(r, "State", "FAILED") if r.job_id == pending.job_id else r for r in reason]
    watch.on_poll(update(done, reason))
    events = drain(watch.mailbox)
    assert [e.kind for e in events] == [EventKind.SNAPSHOT, EventKind.CHANGED]
    assert events[1].record is not None and events[1].record.state == "FAILED"
    assert watch.mailbox.closed


def test_a_full_mailbox_is_emptied_and_told_once() -> None:
    """Past its size, a mailbox drops what it holds and ends with Overflowed."""
    mailbox = Mailbox(2)
    event = JobEventData(EventKind.RECOVERED, "", None, None, 0.0, None)
    for _ in range(5):
        mailbox.post(event)
    assert mailbox.overflowed and mailbox.qsize() == 1
    assert isinstance(mailbox._queue.get_nowait(), Overflowed)


def test_an_event_selection_needs_only_what_is_read_under_its_record() -> None:
    """`job { state }` needs no dataset; `job { nodes }` nodes; `node { jobs }` jobs."""
    from graphql import OperationDefinitionNode, parse

    from resolvers.live_context import selection_needs

    def needs(query: str) -> Need:
        document = parse(query)
        operation = document.definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        root = operation.selection_set.selections[0]
        return selection_needs(getattr(root, "selection_set", None), {})

    assert needs("subscription { jobStateChanged(id: 1) { kind job { state } } }") == Need.NOTHING
    assert needs("subscription { jobEvents { job { nodes { name } } } }") == Need.NODES
    assert needs("subscription { nodeEvents { node { jobs { displayId } } } }") == Need.JOBS
