"""What one subscription follows: the poller hands every poll to each watch, which turns the
changes it cares about into events and posts them to its mailbox (resolvers/mailbox.py) without
ever waiting.

A poll is everyone's; a watch is one subscriber's, and sees the poll through that subscriber's
`Visibility`: a job it may not see is not in squeue as far as it knows, nor in accounting, and
every event carries a view of the poll filtered for it (`job_view`, `node_view`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from resolvers.events import (
    TERMINAL_STATES,
    EventKind,
    FinalRecord,
    JobChange,
    JobEventData,
    NodeChange,
    NodeEventData,
    RecordSource,
    job_matches,
    job_view,
    node_view,
)
from resolvers.mailbox import Mailbox
from resolvers.selection import JobCriteria, filter_nodes, node_state
from resolvers.slurm.jobs import JobRecord, JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.slurm.values import is_decimal
from resolvers.snapshot import Need, Snapshot
from resolvers.visibility import Visibility


@dataclass
class PollUpdate:
    """One successful poll, as every watch sees it."""

    snapshot: Snapshot
    jobs: Mapping[int, JobRow] | None  # None when this poll did not ask for jobs
    nodes: Mapping[str, NodeRecord] | None
    job_changes: list[JobChange] | None  # None when there is no earlier poll to compare with
    node_changes: list[NodeChange] | None
    finals: dict[str, FinalRecord] = field(default_factory=dict)
    # Watches whose job was not looked up with this poll (their requester waits:
    # resolvers/lookup_backoff.py): they take no answer from `finals`, which holds what was
    # looked up for others, so when they are answered never depends on other users' jobs.
    deferred: set[Watch] = field(default_factory=set)

    @cached_property
    def jobs_by_display_id(self) -> dict[str, JobRow]:
        return {row.display_id: row for row in (self.jobs or {}).values()}

    def find_job(self, job_id: str) -> JobRow | None:
        if self.jobs is None:
            return None
        if is_decimal(job_id) and (row := self.jobs.get(int(job_id))) is not None:
            return row
        return self.jobs_by_display_id.get(job_id)


class Watch:
    """One subscription's interest in a cluster; subclasses say which events it wants."""

    needs: Need = Need.NOTHING

    def __init__(
        self,
        mailbox: Mailbox,
        extra_needs: Need = Need.NOTHING,
        *,
        visibility: Visibility,
        requester: str = "",
    ) -> None:
        self.mailbox = mailbox
        self.visibility = visibility  # what the subscriber may see, of the poll and of lookups
        # Who asked (Identity.cache_key): whose look-ups of jobs it was never shown wait when
        # they find nothing (resolvers/lookup_backoff.py).
        self.requester = requester
        self.selection = extra_needs  # what the subscription's fields read, for job_view
        self.needs = self.needs | extra_needs
        self._unavailable = False

    def missing_job(self, update: PollUpdate) -> str | None:
        """A job this watch needs looked up (it is not in squeue), or None."""
        return None

    @property
    def unseen(self) -> bool:
        """Whether no poll or look-up has shown this watch its job yet (its look-ups are then
        paced per requester: resolvers/lookup_backoff.py)."""
        return False

    def found(self, final: FinalRecord) -> bool:
        """Whether `final`, looked up for this watch, is a job its subscriber may see."""
        return final.record is not None and self.visibility.sees(final.record.user)

    def prime(self, update: PollUpdate) -> None:
        """Take `update` as the starting point (the subscription has just begun)."""

    def early(self, update: PollUpdate) -> bool:
        """Whether this watch may take `update` before the poller looks up how jobs that left
        squeue ended (a round trip): it needs none of that, and taking the same poll again
        (the look-up failed, and the next poll is diffed against the one before) posts nothing
        twice. Diff-based watches (feeds) wait."""
        return False

    def on_poll(self, update: PollUpdate) -> None:
        raise NotImplementedError

    def on_error(self, error: Exception, at: float) -> None:
        if not self._unavailable:
            self._unavailable = True
            self._post_status(EventKind.UNAVAILABLE, at, error)

    def on_recovered(self, at: float) -> None:
        if self._unavailable:
            self._unavailable = False
            self._post_status(EventKind.RECOVERED, at, None)

    def _post_status(self, kind: EventKind, at: float, error: Exception | None) -> None:
        raise NotImplementedError


class JobWatch(Watch):
    """One job (`jobStateChanged`): its state when the watch starts, then every new state,
    finished after a terminal one. A job squeue no longer lists is looked up in scontrol and
    accounting; if nothing knows it, the watch says so (UNKNOWN) and finishes."""

    needs = Need.JOBS

    def __init__(
        self,
        job_id: str,
        mailbox: Mailbox,
        extra_needs: Need = Need.NOTHING,
        *,
        visibility: Visibility,
        requester: str = "",
    ) -> None:
        super().__init__(mailbox, extra_needs, visibility=visibility, requester=requester)
        self.job_id = job_id
        self.numeric_id: int | None = int(job_id) if is_decimal(job_id) else None
        self.state: str | None = None
        self.last: JobRecord | None = None
        self._row: JobRow | None = None  # the squeue row last looked at

    def _lookup_key(self) -> str:
        return str(self.numeric_id) if self.numeric_id is not None else self.job_id

    def _find(self, update: PollUpdate) -> JobRow | None:
        """The watched job's row in this poll, if it is there for this subscriber to see."""
        row = update.find_job(self.job_id)
        return row if row is not None and self.visibility.sees(row.user) else None

    def missing_job(self, update: PollUpdate) -> str | None:
        if self.mailbox.closed or update.jobs is None or self._find(update):
            return None
        return self._lookup_key()

    @property
    def unseen(self) -> bool:
        return self.state is None

    def early(self, update: PollUpdate) -> bool:
        # Its job is in the poll; and it posts on a state it has not posted yet, never twice.
        return self._find(update) is not None

    def prime(self, update: PollUpdate) -> None:
        self.on_poll(update, priming=True)

    def on_poll(self, update: PollUpdate, priming: bool = False) -> None:
        if self.mailbox.closed:
            return
        row = self._find(update)
        if row is not None:
            # Most watched jobs did not change: compare the text before splitting fields.
            if self._row is None or row.structured != self._row.structured:
                self._see(row.fields(), RecordSource.SQUEUE, update.snapshot)
            self._row = row
            return
        if priming or self in update.deferred:
            return  # looked up with a later poll
        final = update.finals.get(self._lookup_key())
        if final is None:
            return  # looked up with the next poll
        self._row = None
        if self.found(final):
            assert final.record is not None
            self._see(final.record, final.source, update.snapshot)
            return
        # Nothing this subscriber may see knows the job: another user's job under `own` ends
        # here exactly as an id nobody knows does.
        snapshot = update.snapshot
        view = None
        if self.last is not None:
            view = job_view(snapshot, self.last, self.selection, self.visibility)
        self.mailbox.post(
            JobEventData(
                EventKind.UNKNOWN,
                self.job_id,
                self.last,
                self.state,
                snapshot.taken_at,
                view,
                RecordSource.NONE,
            )
        )
        self.mailbox.finish()

    def _see(self, record: JobRecord, source: RecordSource, snapshot: Snapshot) -> None:
        self.numeric_id = record.job_id
        if self.state is None or record.state != self.state:
            kind = EventKind.SNAPSHOT if self.state is None else EventKind.CHANGED
            view = job_view(snapshot, record, self.selection, self.visibility)
            event = JobEventData(
                kind, record.display_id, record, self.state, snapshot.taken_at, view, source
            )
            self.mailbox.post(event)
        self.state, self.last = record.state, record
        if record.state in TERMINAL_STATES:
            self.mailbox.finish()

    def _post_status(self, kind: EventKind, at: float, error: Exception | None) -> None:
        self.mailbox.post(JobEventData(kind, self.job_id, None, None, at, None, error=error))


class JobFeed(Watch):
    """Jobs matching a filter (`jobEvents`): ADDED when a job enters the set (is submitted, or
    comes to match), CHANGED while it stays, REMOVED when it leaves (stops matching, or leaves
    squeue). A job that left squeue before a poll saw it end first gets its final state from
    scontrol or accounting (CHANGED), or UNKNOWN if nothing knows it."""

    needs = Need.JOBS

    def __init__(
        self,
        criteria: JobCriteria,
        mailbox: Mailbox,
        extra_needs: Need = Need.NOTHING,
        initial: bool = False,
        *,
        visibility: Visibility,
        requester: str = "",
    ) -> None:
        super().__init__(mailbox, extra_needs, visibility=visibility, requester=requester)
        self.criteria = criteria
        self.initial = initial
        self.primed = False

    def _matches(self, job: JobRecord) -> bool:
        """In this feed's set: matching its filter, and the subscriber's to see."""
        return self.visibility.sees(job.user) and job_matches(job, self.criteria)

    def prime(self, update: PollUpdate) -> None:
        self.primed = True
        if not self.initial:
            return
        visible = update.snapshot.seen_by(self.visibility)
        for row in visible.jobs_matching(self.criteria):
            self._post(EventKind.SNAPSHOT, row.fields(), None, update.snapshot)

    def on_poll(self, update: PollUpdate) -> None:
        if not self.primed or update.job_changes is None:
            self.prime(update)
            return
        for change in update.job_changes:
            self._apply(change, update)

    def _apply(self, change: JobChange, update: PollUpdate) -> None:
        before, after, snapshot = change.before, change.after, update.snapshot
        if before is None:
            assert after is not None
            if self._matches(after):
                self._post(EventKind.ADDED, after, None, snapshot)
            return
        if after is not None:
            self._transition(before, after, snapshot)
            return
        # Gone from squeue: first how it ended, if a poll did not see that.
        last, inside = before, self._matches(before)
        final = update.finals.get(str(change.job_id))
        if final is not None and final.record is not None:
            inside = self._transition(before, final.record, snapshot, final.source)
            last = final.record
        elif final is not None and inside:
            self._post(EventKind.UNKNOWN, before, before.state, snapshot, RecordSource.NONE)
        if inside:
            source = final.source if final is not None else RecordSource.SQUEUE
            self._post(EventKind.REMOVED, last, last.state, snapshot, source)

    def _transition(
        self,
        before: JobRecord,
        after: JobRecord,
        snapshot: Snapshot,
        source: RecordSource = RecordSource.SQUEUE,
    ) -> bool:
        """Post what moving from `before` to `after` means for this feed; True if `after` is
        in the feed's set."""
        was, now = self._matches(before), self._matches(after)
        if was and now:
            self._post(EventKind.CHANGED, after, before.state, snapshot, source)
        elif now:
            self._post(EventKind.ADDED, after, before.state, snapshot, source)
        elif was:
            # What it left as, if the subscriber may see that record (a final one comes from
            # accounting, keyed by id alone); else as last seen.
            shown = after if self.visibility.sees(after.user) else before
            self._post(EventKind.REMOVED, shown, before.state, snapshot, source)
        return now

    def _post(
        self,
        kind: EventKind,
        record: JobRecord,
        previous: str | None,
        snapshot: Snapshot,
        source: RecordSource = RecordSource.SQUEUE,
    ) -> None:
        view = job_view(snapshot, record, self.selection, self.visibility)
        self.mailbox.post(
            JobEventData(kind, record.display_id, record, previous, snapshot.taken_at, view, source)
        )

    def _post_status(self, kind: EventKind, at: float, error: Exception | None) -> None:
        self.mailbox.post(JobEventData(kind, "", None, None, at, None, error=error))


class NodeFeed(Watch):
    """Nodes matching a filter (`nodeEvents`): state, flag and reason changes."""

    needs = Need.NODES

    def __init__(
        self,
        states: frozenset[str] | None,
        partitions: frozenset[str] | None,
        mailbox: Mailbox,
        extra_needs: Need = Need.NOTHING,
        initial: bool = False,
        *,
        visibility: Visibility,
        requester: str = "",
    ) -> None:
        super().__init__(mailbox, extra_needs, visibility=visibility, requester=requester)
        self.states = states
        self.partitions = partitions
        self.initial = initial
        self.primed = False

    def _matches(self, node: NodeRecord) -> bool:
        return bool(filter_nodes([node], states=self.states, partitions=self.partitions))

    def prime(self, update: PollUpdate) -> None:
        self.primed = True
        if self.initial:
            for node in (update.nodes or {}).values():
                if self._matches(node):
                    self._post(EventKind.SNAPSHOT, node, None, update.snapshot)

    def on_poll(self, update: PollUpdate) -> None:
        if not self.primed or update.node_changes is None:
            self.prime(update)
            return
        for change in update.node_changes:
            before, after = change.before, change.after
            was = before is not None and self._matches(before)
            now = after is not None and self._matches(after)
            if was and now:
                assert after is not None
                self._post(EventKind.CHANGED, after, before, update.snapshot)
            elif now:
                assert after is not None
                self._post(EventKind.ADDED, after, before, update.snapshot)
            elif was:
                assert before is not None
                self._post(EventKind.REMOVED, after or before, before, update.snapshot)

    def _post(
        self, kind: EventKind, node: NodeRecord, before: NodeRecord | None, snapshot: Snapshot
    ) -> None:
        self.mailbox.post(
            NodeEventData(
                kind,
                node.name,
                node,
                node_state(before) if before is not None else None,
                before.reason if before is not None else None,
                snapshot.taken_at,
                node_view(snapshot, node, self.selection, self.visibility),
            )
        )

    def _post_status(self, kind: EventKind, at: float, error: Exception | None) -> None:
        self.mailbox.post(NodeEventData(kind, "", None, None, None, at, None, error=error))
