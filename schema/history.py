"""Types of job history from accounting: the filter, a job's steps and its efficiency."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from resolvers.global_ids import Kind, global_id
from resolvers.history import HistoryFilterValues
from resolvers.ids import BadUserInput
from resolvers.slurm.history import STATES, Efficiency, StepRecord
from schema.enums import JobState
from schema.identification import Node
from schema.scalars import Long


@strawberry.enum(description="Where a job's record came from.")
class JobSource(enum.Enum):
    SLURMCTLD = strawberry.enum_value("SLURMCTLD", description="squeue/scontrol: a live job")
    ACCOUNTING = strawberry.enum_value("ACCOUNTING", description="sacct, from slurmdbd")


def _epoch(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BadUserInput(f"{name} needs a time zone (e.g. 2026-01-31T08:00:00Z)")
    return int(value.timestamp())


@strawberry.input(
    description="Which finished jobs to list; every criterion is pushed into one sacct call. "
    "Without time bounds: jobs of the last 24 hours."
)
class JobHistoryFilter:
    users: list[str] | None = None
    accounts: list[str] | None = None
    partitions: list[str] | None = None
    qos: list[str] | None = None
    states: list[JobState] | None = None
    names: list[str] | None = None
    ids: list[str] | None = strawberry.field(default=None, description="Job ids: 42 or 42_3.")
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    ended_after: datetime | None = None
    ended_before: datetime | None = None

    def values(self) -> HistoryFilterValues:
        """Plain values; states sacct cannot filter on are refused (BadUserInput)."""
        states = tuple(s.value for s in self.states or ())
        for state in states:
            if state not in STATES:
                raise BadUserInput(f"accounting does not filter on state {state}")
        return HistoryFilterValues(
            users=None if self.users is None else tuple(self.users),
            accounts=tuple(self.accounts or ()),
            partitions=tuple(self.partitions or ()),
            qos=tuple(self.qos or ()),
            states=states,
            names=tuple(self.names or ()),
            job_ids=tuple(self.ids or ()),
            submitted_after=_epoch(self.submitted_after, "submittedAfter"),
            submitted_before=_epoch(self.submitted_before, "submittedBefore"),
            ended_after=_epoch(self.ended_after, "endedAfter"),
            ended_before=_epoch(self.ended_before, "endedBefore"),
        )


@strawberry.type(description="One step of a job (batch, extern, or an srun), from accounting.")
class JobStep(Node):
    _step: strawberry.Private[StepRecord]
    _cluster: strawberry.Private[str]
    _job_id: strawberry.Private[int]  # the job's unique id (an array task's own)

    @strawberry.field(
        description="Opaque global id (Node), from the cluster, the job's unique id and the step "
        "id; `node(id:)` reads it again from accounting, as the caller."
    )
    def id(self) -> strawberry.ID:
        key = f"{self._job_id}.{self._step.step_id}"
        return strawberry.ID(global_id(Kind.JOB_STEP, self._cluster, key))

    @strawberry.field(description="The step's id within its job: batch, extern, 0, 1…")
    def step_id(self) -> str:
        return self._step.step_id

    @strawberry.field(description="The step's full id, e.g. 42.batch.")
    def full_id(self) -> str:
        return self._step.display_id

    @strawberry.field
    def name(self) -> str:
        return self._step.name

    @strawberry.field
    def state(self) -> JobState:
        return JobState.from_slurm(self._step.state)

    @strawberry.field
    def exit_code(self) -> int | None:
        return self._step.exit_code

    @strawberry.field
    def elapsed_seconds(self) -> int | None:
        return self._step.elapsed_seconds

    @strawberry.field(description="User and system CPU time of the step's processes, seconds.")
    def cpu_seconds(self) -> float | None:
        return self._step.cpu_seconds

    @strawberry.field(description="The largest resident set of any of its tasks, bytes.")
    def max_rss_bytes(self) -> Long | None:
        return None if self._step.max_rss_bytes is None else Long(self._step.max_rss_bytes)

    @strawberry.field(description="Nodes in Slurm's compact form (n[1-2]).")
    def nodes(self) -> str | None:
        return self._step.node_list


@strawberry.type(description="What seff prints: how much of what was allocated a job used.")
class JobEfficiency:
    _figures: strawberry.Private[Efficiency]

    @strawberry.field
    def elapsed_seconds(self) -> int:
        return self._figures.elapsed_seconds

    @strawberry.field
    def cpu_seconds(self) -> float:
        return self._figures.cpu_seconds

    @strawberry.field(description="CPU time over elapsed time times allocated CPUs, percent.")
    def cpu_efficiency_percent(self) -> float | None:
        return self._figures.cpu_efficiency_percent

    @strawberry.field(description="The largest MaxRSS of the job's steps, bytes.")
    def max_rss_bytes(self) -> Long | None:
        figure = self._figures.max_rss_bytes
        return None if figure is None else Long(figure)

    @strawberry.field(
        description="maxRssBytes over the memory the job requested (ReqMem, as seff), percent."
    )
    def memory_efficiency_percent(self) -> float | None:
        return self._figures.memory_efficiency_percent
