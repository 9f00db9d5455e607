"""The Job type: one row of Slurm's job list (a job, an array task, or an array's pending rest)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from resolvers.selection import job_partitions
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.jobs import JobRecord
from resolvers.snapshot import Snapshot
from schema.enums import JobState
from schema.scalars import Long

if TYPE_CHECKING:
    from schema.node import Node
    from schema.partition import Partition


def to_datetime(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@strawberry.type(description="A Slurm job, array task, or the pending remainder of an array.")
class Job:
    id: str = strawberry.field(description="Slurm's display id: 42, 42_3 or 42_[4-9%2].")
    job_id: int = strawberry.field(description="Slurm's unique numeric job id.")
    array_job_id: int | None
    array_task_id: str | None = strawberry.field(description="A task index, or a pending range.")
    name: str
    user: str
    account: str | None
    state: JobState
    reason: str | None = strawberry.field(description="Why the job waits or ended, if it does.")
    submit_time: datetime | None
    start_time: datetime | None = strawberry.field(
        description="When the job started, or when Slurm expects it to start if pending."
    )
    end_time: datetime | None = strawberry.field(
        description="When the job ended, or when its time limit will end it if running."
    )
    time_limit_minutes: int | None = strawberry.field(description="Null means unlimited.")
    num_nodes: int
    num_cpus: int
    exit_code: int | None
    signal: int | None = strawberry.field(description="The signal that ended the job, 0 if none.")
    work_dir: str | None
    stdout_path: str | None
    stderr_path: str | None
    command: str | None
    dependency: str | None
    priority: Long | None = strawberry.field(
        description="Slurm's scheduling priority (unsigned 32-bit)."
    )
    qos: str | None
    comment: str | None
    node_list: str | None = strawberry.field(description="Allocated nodes as a Slurm hostlist.")
    _record: strawberry.Private[JobRecord]
    _snapshot: strawberry.Private[Snapshot]

    @classmethod
    def from_record(cls, record: JobRecord, snapshot: Snapshot) -> Job:
        return cls(
            id=record.display_id,
            job_id=record.job_id,
            array_job_id=record.array_job_id,
            array_task_id=record.array_task_id,
            name=record.name,
            user=record.user,
            account=record.account,
            state=JobState.from_slurm(record.state),
            reason=record.reason,
            submit_time=to_datetime(record.submit_time),
            start_time=to_datetime(record.start_time),
            end_time=to_datetime(record.end_time),
            time_limit_minutes=record.time_limit_minutes,
            num_nodes=record.num_nodes,
            num_cpus=record.num_cpus,
            exit_code=record.exit_code,
            signal=record.signal,
            work_dir=record.work_dir,
            stdout_path=record.stdout_path,
            stderr_path=record.stderr_path,
            command=record.command,
            dependency=record.dependency,
            priority=Long(record.priority) if record.priority is not None else None,
            qos=record.qos,
            comment=record.comment,
            node_list=record.node_list,
            _record=record,
            _snapshot=snapshot,
        )

    @strawberry.field(
        description="The partition the job runs in (the first one, if pending in several)."
    )
    def partition(self) -> Annotated[Partition, strawberry.lazy("schema.partition")] | None:
        from schema.partition import Partition

        for name in job_partitions(self._record):
            record = self._snapshot.partitions_by_name.get(name)
            if record is not None:
                return Partition.from_record(record, self._snapshot)
        return None

    @strawberry.field(description="The nodes allocated to the job; empty while it is pending.")
    def nodes(self) -> list[Annotated[Node, strawberry.lazy("schema.node")]]:
        from schema.node import Node

        by_name = self._snapshot.nodes_by_name
        return [
            Node.from_record(by_name[name], self._snapshot)
            for name in expand_hostlist(self._record.node_list or "")
            if name in by_name
        ]
