"""What changed between two snapshots of a cluster, and the events subscribers receive. Pure.

The poller diffs consecutive snapshots once per poll (`diff_jobs`, `diff_nodes`); each
subscription then picks the changes it cares about. A job's priority drifts on its own and is not
a change; anything else squeue prints about it is. A node changes when its state, flags or reason
do, not when its load or free memory move.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from resolvers.selection import JobCriteria, job_matches_id, job_partitions, node_state
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.jobs import FIELD_SEPARATOR, STRUCTURED_FIELDS, JobRecord, JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.snapshot import Need, Snapshot
from resolvers.visibility import Visibility

# A job in one of these states will not change again.
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
    }
)

_PRIORITY = STRUCTURED_FIELDS.index("PriorityLong")


class EventKind(enum.Enum):
    SNAPSHOT = "SNAPSHOT"  # the state when the subscription started
    ADDED = "ADDED"  # a job (node) entered the set the subscription follows
    CHANGED = "CHANGED"
    REMOVED = "REMOVED"  # it left the set: filtered out, or gone from Slurm's queue
    UNKNOWN = "UNKNOWN"  # Slurm forgot the job and no accounting record says how it ended
    UNAVAILABLE = "UNAVAILABLE"  # polling failed; events resume after RECOVERED
    RECOVERED = "RECOVERED"


class RecordSource(enum.Enum):
    """Where a job's record came from."""

    SQUEUE = "SQUEUE"
    SCONTROL = "SCONTROL"
    ACCOUNTING = "ACCOUNTING"  # sacct, from slurmdbd
    COMPLETION_LOG = "COMPLETION_LOG"  # sacct -c, from jobcomp/filetxt
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class JobChange:
    """One job between two polls: `before` is None when it is new, `after` when it is gone."""

    job_id: int
    before: JobRecord | None
    after: JobRecord | None


@dataclass(frozen=True, slots=True)
class NodeChange:
    name: str
    before: NodeRecord | None
    after: NodeRecord | None


@dataclass(frozen=True, slots=True)
class FinalRecord:
    """How a job that left squeue ended, as the first source that knew it said; record is None
    when no source knew the job."""

    record: JobRecord | None
    source: RecordSource


@dataclass(frozen=True, slots=True)
class JobEventData:
    """One job event, before it becomes a GraphQL JobEvent."""

    kind: EventKind
    job_id: str  # Slurm's display id, or the id subscribed to
    record: JobRecord | None
    previous_state: str | None
    at: float  # when the poll that saw it was taken (epoch seconds)
    snapshot: Snapshot | None
    source: RecordSource = RecordSource.SQUEUE
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class NodeEventData:
    kind: EventKind
    name: str
    record: NodeRecord | None
    previous_state: str | None
    previous_reason: str | None
    at: float
    snapshot: Snapshot | None
    error: Exception | None = None


def jobs_by_id(rows: tuple[JobRow, ...] | None) -> dict[int, JobRow]:
    return {row.job_id: row for row in rows or ()}


def _without_priority(row: JobRow) -> list[str]:
    fields = row.structured.split(FIELD_SEPARATOR)
    fields[_PRIORITY] = ""
    return fields


def row_changed(before: JobRow, after: JobRow) -> bool:
    # Structured fields compare as text first, the common case; free text is split because each
    # squeue call separates it with a boundary of its own.
    if before.structured != after.structured and _without_priority(before) != _without_priority(
        after
    ):
        return True
    return before.free_text.split(before.free_separator) != after.free_text.split(
        after.free_separator
    )


def job_view(
    snapshot: Snapshot, record: JobRecord, needs: Need, visibility: Visibility
) -> Snapshot:
    """What an event about `record` keeps of its poll's snapshot, for a selection reading `needs`,
    as `visibility` may see it.

    Strawberry and graphql-core hold on to the last event of every subscription while it waits
    for the next one. Were that event to keep its whole poll, a thousand quiet subscribers would
    keep up to a thousand polls of every job alive. So an event keeps the partitions and the
    job's own nodes, if its selection reads them, and the job list only if it reads that too
    (a node's jobs), which is rare.
    """
    if Need.JOBS in needs:
        return snapshot.seen_by(visibility)
    nodes = None
    if Need.NODES in needs and snapshot.nodes is not None:
        by_name = snapshot.nodes_by_name
        wanted = expand_hostlist(record.node_list or "")
        nodes = tuple(by_name[name] for name in wanted if name in by_name)
    return _view(snapshot, needs, nodes, visibility)


def node_view(
    snapshot: Snapshot, record: NodeRecord, needs: Need, visibility: Visibility
) -> Snapshot:
    """As job_view, for an event about a node."""
    if Need.JOBS in needs:
        return snapshot.seen_by(visibility)
    return _view(snapshot, needs, (record,), visibility)


def _view(
    snapshot: Snapshot,
    needs: Need,
    nodes: tuple[NodeRecord, ...] | None,
    visibility: Visibility,
) -> Snapshot:
    partitions = snapshot.partitions if Need.PARTITIONS in needs else None
    kept = (Need.PARTITIONS if partitions is not None else Need.NOTHING) | (
        Need.NODES if nodes is not None else Need.NOTHING
    )
    # It holds no jobs, so there is nothing to filter: it is a view for `visibility` as made.
    return Snapshot(
        snapshot.cluster,
        snapshot.taken_at,
        kept | (snapshot.needs & Need.VERSION),
        version=snapshot.version,
        partitions=partitions,
        nodes=nodes,
        audience=visibility,
    )


def diff_jobs(before: Mapping[int, JobRow], after: Mapping[int, JobRow]) -> list[JobChange]:
    """Jobs added, changed or gone between two squeue snapshots, by Slurm's unique job id."""
    changes: list[JobChange] = []
    for job_id, row in after.items():
        old = before.get(job_id)
        if old is None:
            changes.append(JobChange(job_id, None, row.fields()))
        elif row_changed(old, row):
            changes.append(JobChange(job_id, old.fields(), row.fields()))
    changes.extend(
        JobChange(job_id, row.fields(), None)
        for job_id, row in before.items()
        if job_id not in after
    )
    return changes


def _node_key(node: NodeRecord) -> tuple[str, tuple[str, ...], str | None]:
    return node_state(node), tuple(node.state_flags), node.reason


def diff_nodes(
    before: Mapping[str, NodeRecord], after: Mapping[str, NodeRecord]
) -> list[NodeChange]:
    changes = [
        NodeChange(name, before.get(name), node)
        for name, node in after.items()
        if name not in before or _node_key(before[name]) != _node_key(node)
    ]
    changes.extend(
        NodeChange(name, node, None) for name, node in before.items() if name not in after
    )
    return changes


def job_matches(job: JobRecord, criteria: JobCriteria) -> bool:
    """The same test as selection.filter_jobs, on one record (which may come from accounting)."""
    if criteria.states is not None and job.state not in criteria.states:
        return False
    if criteria.users is not None and job.user not in criteria.users:
        return False
    if criteria.names is not None and job.name not in criteria.names:
        return False
    if criteria.partitions is not None and not any(
        p in criteria.partitions for p in job_partitions(job)
    ):
        return False
    return criteria.ids is None or any(job_matches_id(job, wanted) for wanted in criteria.ids)
