"""The Job type: one row of Slurm's job list (a job, an array task, or an array's pending rest).

A Job wraps its parsed record and converts a field only when a query asks for it: listings of
thousands of jobs usually select a handful of fields.

Job, ComputeNode, Partition and JobConnection name each other as the GraphQL types do: the
references back up (Job.partition, Job.nodes) are strawberry.lazy, imported where they resolve.
Their modules form the one import circle tests/test_imports.py allows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from resolvers.context import RequestContext
from resolvers.final_state import from_accounting
from resolvers.global_ids import Kind, global_id
from resolvers.output import (
    DEFAULT_TAIL_BYTES,
    OutputTail,
    has_started,
    output_file,
    validate_tail_bytes,
)
from resolvers.selection import job_partitions
from resolvers.slurm.history import HistoryRecord, efficiency
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.job_fields import split_comment
from resolvers.slurm.jobs import JobRecord, JobRow
from resolvers.snapshot import Snapshot
from resolvers.visibility import check_visible
from schema.enums import JobState
from schema.errors import expected_errors_as_graphql
from schema.history import JobEfficiency, JobSource, JobStep
from schema.identification import Node
from schema.output import JobOutput, OutputStream
from schema.scalars import Long, to_datetime

if TYPE_CHECKING:
    from schema.node import ComputeNode
    from schema.partition import Partition


@strawberry.type(description="A Slurm job, array task, or the pending remainder of an array.")
class Job(Node):
    _record: strawberry.Private[JobRecord]
    _snapshot: strawberry.Private[Snapshot]
    # Set for a job read from accounting (Cluster.jobHistory): its steps and measurements.
    _history: strawberry.Private[HistoryRecord | None] = None

    def __post_init__(self) -> None:
        # The choke point of SLURM_GRAPHQL_JOB_VISIBILITY: no Job exists but on a request's
        # view of a snapshot, for a job that view's audience may see (resolvers/visibility.py).
        check_visible(self._snapshot.audience, self._record.user)

    @classmethod
    def from_row(cls, row: JobRow, snapshot: Snapshot) -> Job:
        return cls(_record=row.fields(), _snapshot=snapshot)

    @classmethod
    def from_history(cls, history: HistoryRecord, snapshot: Snapshot) -> Job:
        """A job as slurmdbd remembers it, on the request's view (visibility applies)."""
        record = from_accounting(history)  # a HistoryRecord is an AccountingRecord
        return cls(_record=record, _snapshot=snapshot, _history=history)

    @strawberry.field(description="Where this record came from: the controller or accounting.")
    def source(self) -> JobSource:
        return JobSource.SLURMCTLD if self._history is None else JobSource.ACCOUNTING

    @strawberry.field(
        description="The job's steps as accounting measured them (Cluster.jobHistory); empty "
        "for a job read from the controller."
    )
    def steps(self) -> list[JobStep]:
        if self._history is None:
            return []
        cluster, job_id = self._snapshot.cluster, self._history.job_id
        return [JobStep(_step=s, _cluster=cluster, _job_id=job_id) for s in self._history.steps]

    @strawberry.field(
        description="What seff prints, from accounting; null while unknown (a live job, or one "
        "accounting has not seen end)."
    )
    def efficiency(self) -> JobEfficiency | None:
        figures = None if self._history is None else efficiency(self._history)
        return None if figures is None else JobEfficiency(_figures=figures)

    @property
    def record(self) -> JobRecord:
        """The Slurm record behind this job, for other schema types (not a GraphQL field)."""
        return self._record

    @strawberry.field(
        description="Opaque global id (Node), from the cluster and Slurm's unique job id: the "
        "pending rest of an array keeps it while its display id shrinks."
    )
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id(Kind.JOB, self._snapshot.cluster, str(self._record.job_id)))

    @strawberry.field(description="Slurm's display id: 42, 42_3 or 42_[4-9%2].")
    def display_id(self) -> str:
        return self._record.display_id

    @strawberry.field(description="Slurm's unique numeric job id.")
    def job_id(self) -> int:
        return self._record.job_id

    @strawberry.field
    def array_job_id(self) -> int | None:
        return self._record.array_job_id

    @strawberry.field(description="A task index, or the range still pending (`3-6%2`).")
    def array_task_id(self) -> str | None:
        return self._record.array_task_id

    @strawberry.field
    def name(self) -> str:
        return self._record.name

    @strawberry.field
    def user(self) -> str:
        return self._record.user

    @strawberry.field
    def account(self) -> str | None:
        return self._record.account

    @strawberry.field
    def state(self) -> JobState:
        return JobState.from_slurm(self._record.state)

    @strawberry.field(description="Why the job waits or ended, if it does.")
    def reason(self) -> str | None:
        return self._record.reason

    @strawberry.field
    def submit_time(self) -> datetime | None:
        return to_datetime(self._record.submit_time)

    @strawberry.field(description="When the job started, or when Slurm expects it to if pending.")
    def start_time(self) -> datetime | None:
        return to_datetime(self._record.start_time)

    @strawberry.field(description="When the job ended, or when its time limit will end it.")
    def end_time(self) -> datetime | None:
        return to_datetime(self._record.end_time)

    @strawberry.field(description="Null means unlimited.")
    def time_limit_minutes(self) -> int | None:
        return self._record.time_limit_minutes

    @strawberry.field
    def num_nodes(self) -> int:
        return self._record.num_nodes

    @strawberry.field
    def num_cpus(self) -> int:
        return self._record.num_cpus

    @strawberry.field
    def exit_code(self) -> int | None:
        return self._record.exit_code

    @strawberry.field(description="The signal that ended the job, 0 if none.")
    def signal(self) -> int | None:
        return self._record.signal

    @strawberry.field
    def work_dir(self) -> str | None:
        return self._record.work_dir

    @strawberry.field(
        description="The file the job writes its stdout to, its pattern resolved as Slurm "
        "does (`slurm-%j.out` in the work directory without --output); null until it is "
        "known (`%N` before the job runs, a pending array's tasks) or if no batch script "
        "writes one."
    )
    def stdout_path(self) -> str | None:
        return output_file(self._record, stderr=False, slurm_version=self._snapshot.version)

    @strawberry.field(description="As stdoutPath, for stderr (stdout's file without --error).")
    def stderr_path(self) -> str | None:
        return output_file(self._record, stderr=True, slurm_version=self._snapshot.version)

    @strawberry.field(
        description="The stdout filename pattern as submitted (`/home/alice/%x-%j.out`), the "
        "default one included, on every Slurm version."
    )
    def stdout_pattern(self) -> str | None:
        return self._record.stdout_pattern

    @strawberry.field(description="As stdoutPattern, for stderr.")
    def stderr_pattern(self) -> str | None:
        return self._record.stderr_pattern

    @strawberry.field
    def command(self) -> str | None:
        return self._record.command

    @strawberry.field
    def dependency(self) -> str | None:
        return self._record.dependency

    @strawberry.field(description="Slurm's scheduling priority (unsigned 32-bit).")
    def priority(self) -> Long | None:
        priority = self._record.priority
        return None if priority is None else Long(priority)

    @strawberry.field
    def qos(self) -> str | None:
        return self._history.qos if self._history is not None else self._record.qos

    @strawberry.field
    def comment(self) -> str | None:
        return split_comment(self._record.comment)[0]

    @strawberry.field(description="The key of the submitJob call that created this job, if any.")
    def client_mutation_id(self) -> str | None:
        return split_comment(self._record.comment)[1]

    @strawberry.field(
        description="The end of the job's output file, read as the job's user; null until "
        "the job has started (a pending, held or requeued job: what lies at its path is not "
        "its output yet) and while the file does not exist."
    )
    async def output(
        self,
        info: strawberry.Info,
        stream: OutputStream = OutputStream.STDOUT,
        tail_bytes: int = DEFAULT_TAIL_BYTES,
    ) -> JobOutput | None:
        stderr = stream is OutputStream.STDERR
        path = output_file(self._record, stderr=stderr, slurm_version=self._snapshot.version)
        if path is None:
            return None
        context: RequestContext = info.context
        owner = self._record.user

        async def read() -> OutputTail | None:
            validate_tail_bytes(tail_bytes)
            # Who may read is answered before whether there is anything to read: bob asking for
            # alice's pending job is refused as for her running one.
            reader = context.output_reader(self._snapshot.cluster, owner)
            if not has_started(self._record, self._snapshot.taken_at):
                return None
            return await reader.read(path, tail_bytes)

        tail = await expected_errors_as_graphql(read())
        return None if tail is None else JobOutput.from_tail(tail)

    @strawberry.field(description="Allocated nodes as a Slurm hostlist.")
    def node_list(self) -> str | None:
        return self._record.node_list

    @strawberry.field(
        description="The partition the job runs in (the first, if pending in several)."
    )
    def partition(self) -> Annotated[Partition, strawberry.lazy("schema.partition")] | None:
        from schema.partition import Partition

        for name in job_partitions(self._record):
            record = self._snapshot.partitions_by_name.get(name)
            if record is not None:
                return Partition.from_record(record, self._snapshot)
        return None

    @strawberry.field(description="The nodes allocated to the job; empty while it is pending.")
    def nodes(self) -> list[Annotated[ComputeNode, strawberry.lazy("schema.node")]]:
        from schema.node import ComputeNode

        by_name = self._snapshot.nodes_by_name
        return [
            ComputeNode.from_record(by_name[name], self._snapshot)
            for name in expand_hostlist(self._record.node_list or "")
            if name in by_name
        ]
