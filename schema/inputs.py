"""Inputs of the mutations, and their translation into the resolvers' requests."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import strawberry

from resolvers.slurm.job_fields import Dependency
from resolvers.slurm.job_update import JobUpdate
from resolvers.slurm.sbatch import SubmitRequest


@strawberry.enum(description="How a job depends on others (sbatch --dependency).")
class DependencyType(enum.Enum):
    AFTER = "after"
    AFTERANY = "afterany"
    AFTEROK = "afterok"
    AFTERNOTOK = "afternotok"
    AFTERCORR = "aftercorr"
    AFTERBURSTBUFFER = "afterburstbuffer"
    SINGLETON = "singleton"


@strawberry.input
class DependencyInput:
    type: DependencyType
    job_ids: list[str] = strawberry.field(default_factory=list)


@strawberry.input(description="An environment variable given to the job.")
class EnvironmentVariableInput:
    name: str
    value: str


@strawberry.input(description="An extra sbatch long option from the allowed list.")
class SbatchOptionInput:
    name: str = strawberry.field(description="Without dashes, e.g. mail-type.")
    value: str | None = None


@strawberry.input(description="A batch job to submit: give `script` or `scriptS3Uri`.")
class SubmitJobInput:
    script: str | None = strawberry.field(
        default=None, description="The batch script's text, starting with #!."
    )
    script_s3_uri: str | None = strawberry.field(
        default=None,
        description="s3://bucket/key of the script, fetched on the head node with its AWS CLI "
        "(large scripts travel better this way than inline).",
    )
    name: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    time_limit_minutes: int | None = None
    nodes: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    memory_mb: int | None = None
    memory_per_cpu_mb: int | None = None
    gres: str | None = None
    constraint: str | None = None
    array: str | None = strawberry.field(default=None, description="e.g. 0-9%2 or 1,3,5")
    dependencies: list[DependencyInput] | None = None
    any_dependency: bool = strawberry.field(
        default=False, description="Start when any dependency is met, not all."
    )
    work_dir: str | None = strawberry.field(
        default=None, description="An absolute path; the user's home directory if omitted."
    )
    stdout_path: str | None = None
    stderr_path: str | None = None
    environment: list[EnvironmentVariableInput] | None = None
    export_env: bool = strawberry.field(
        default=False,
        description="Also export the submission environment (--export=ALL). Otherwise the job "
        "gets the user's login environment plus `environment`.",
    )
    hold: bool = False
    begin_time: datetime | None = None
    comment: str | None = None
    exclusive: bool = False
    client_mutation_id: str | None = strawberry.field(
        default=None,
        description="Idempotency key: a retry with the same key returns the job the first "
        "call created, for as long as Slurm knows that job.",
    )
    extra_options: list[SbatchOptionInput] | None = None

    def to_request(self) -> SubmitRequest:
        begin = None
        if self.begin_time is not None:
            when = self.begin_time
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            begin = (when - datetime.now(UTC)).total_seconds()
        return SubmitRequest(
            script=self.script,
            script_s3_uri=self.script_s3_uri,
            name=self.name,
            partition=self.partition,
            account=self.account,
            qos=self.qos,
            reservation=self.reservation,
            time_limit_minutes=self.time_limit_minutes,
            nodes=self.nodes,
            ntasks=self.ntasks,
            cpus_per_task=self.cpus_per_task,
            memory_mb=self.memory_mb,
            memory_per_cpu_mb=self.memory_per_cpu_mb,
            gres=self.gres,
            constraint=self.constraint,
            array=self.array,
            dependencies=_dependencies(self.dependencies) or (),
            any_dependency=self.any_dependency,
            work_dir=self.work_dir,
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
            environment=tuple((v.name, v.value) for v in self.environment or ()),
            export_env=self.export_env,
            hold=self.hold,
            begin_in_seconds=begin,
            comment=self.comment,
            exclusive=self.exclusive,
            client_mutation_id=self.client_mutation_id,
            extra_options=tuple((o.name, o.value) for o in self.extra_options or ()),
        )


@strawberry.input(description="Changes to a job; omitted fields stay as they are.")
class UpdateJobInput:
    time_limit_minutes: int | None = None
    name: str | None = None
    comment: str | None = None
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    reservation: str | None = None
    nice: int | None = None
    dependencies: list[DependencyInput] | None = None
    any_dependency: bool = False

    def to_update(self) -> JobUpdate:
        return JobUpdate(
            time_limit_minutes=self.time_limit_minutes,
            name=self.name,
            comment=self.comment,
            partition=self.partition,
            qos=self.qos,
            account=self.account,
            reservation=self.reservation,
            nice=self.nice,
            dependencies=_dependencies(self.dependencies),
            any_dependency=self.any_dependency,
        )


def _dependencies(given: list[DependencyInput] | None) -> tuple[Dependency, ...] | None:
    if given is None:
        return None
    return tuple(Dependency(d.type.value, tuple(d.job_ids)) for d in given)
