"""The events subscriptions deliver: JobEvent and NodeEvent, and what they are made of."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import strawberry

from resolvers.events import EventKind, JobEventData, NodeEventData, RecordSource
from schema.enums import JobState, NodeState
from schema.errors import ErrorCode, to_graphql_error
from schema.job import Job
from schema.node import ComputeNode


@strawberry.enum(description="What happened.")
class JobEventKind(enum.Enum):
    SNAPSHOT = strawberry.enum_value(
        EventKind.SNAPSHOT.value, description="The state when the subscription started."
    )
    ADDED = strawberry.enum_value(
        EventKind.ADDED.value, description="Entered the followed set (new, or now matching)."
    )
    CHANGED = strawberry.enum_value(EventKind.CHANGED.value)
    REMOVED = strawberry.enum_value(
        EventKind.REMOVED.value, description="Left the set: no longer matching, or gone from Slurm."
    )
    UNKNOWN = strawberry.enum_value(
        EventKind.UNKNOWN.value,
        description="Slurm forgot the job and no accounting record says how it ended; `job` is "
        "the last record seen, if any.",
    )
    UNAVAILABLE = strawberry.enum_value(
        EventKind.UNAVAILABLE.value,
        description="The cluster cannot be polled (see `error`); events resume after RECOVERED.",
    )
    RECOVERED = strawberry.enum_value(
        EventKind.RECOVERED.value,
        description="Polling works again; changes made meanwhile follow as usual.",
    )


@strawberry.enum(description="Where the job's record came from.")
class JobRecordSource(enum.Enum):
    SQUEUE = RecordSource.SQUEUE.value
    SCONTROL = RecordSource.SCONTROL.value
    ACCOUNTING = strawberry.enum_value(RecordSource.ACCOUNTING.value, description="sacct")
    COMPLETION_LOG = strawberry.enum_value(
        RecordSource.COMPLETION_LOG.value, description="sacct -c (jobcomp/filetxt)"
    )
    NONE = RecordSource.NONE.value


@strawberry.type(description="Why the cluster could not be polled.")
class EventError:
    code: str
    message: str

    @classmethod
    def from_exception(cls, exc: Exception | None) -> EventError | None:
        if exc is None:
            return None
        error = to_graphql_error(exc)
        if error is None:
            return cls(code=ErrorCode.INTERNAL_SERVER_ERROR.value, message="internal error")
        return cls(code=str((error.extensions or {})["code"]), message=error.message)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@strawberry.type(description="A change to a job, as the poller saw it.")
class JobEvent:
    kind: JobEventKind
    job_id: str | None = strawberry.field(
        description="The job's display id (null for UNAVAILABLE and RECOVERED)."
    )
    job: Job | None
    previous_state: JobState | None = strawberry.field(
        description="The state before this event; null for SNAPSHOT and first sightings."
    )
    at: datetime = strawberry.field(description="When the poll that saw the change was taken.")
    source: JobRecordSource
    error: EventError | None

    @classmethod
    def from_data(cls, data: JobEventData) -> JobEvent:
        record, snapshot = data.record, data.snapshot
        return cls(
            kind=JobEventKind(data.kind.value),
            job_id=data.job_id or None,
            job=Job(_record=record, _snapshot=snapshot)
            if record is not None and snapshot is not None
            else None,
            previous_state=JobState.from_slurm(data.previous_state)
            if data.previous_state is not None
            else None,
            at=_at(data.at),
            source=JobRecordSource(data.source.value),
            error=EventError.from_exception(data.error),
        )


@strawberry.type(description="A change to a node's state, flags or reason.")
class NodeEvent:
    kind: JobEventKind
    name: str | None = strawberry.field(description="null for UNAVAILABLE and RECOVERED.")
    node: ComputeNode | None
    previous_state: NodeState | None
    previous_reason: str | None
    at: datetime
    error: EventError | None

    @classmethod
    def from_data(cls, data: NodeEventData) -> NodeEvent:
        record, snapshot = data.record, data.snapshot
        return cls(
            kind=JobEventKind(data.kind.value),
            name=data.name or None,
            node=ComputeNode.from_record(record, snapshot)
            if record is not None and snapshot is not None
            else None,
            previous_state=NodeState(data.previous_state)
            if data.previous_state is not None
            else None,
            previous_reason=data.previous_reason,
            at=_at(data.at),
            error=EventError.from_exception(data.error),
        )
