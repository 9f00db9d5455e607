"""What mutations return: a success type or a typed rejection, as one union each."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry

from resolvers.mutations import Rejected, Written
from schema.job import Job


@strawberry.enum(description="Why a mutation was refused.")
class RejectionCode(enum.Enum):
    INVALID_INPUT = "INVALID_INPUT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    INVALID_STATE = "INVALID_STATE"
    SLURM_REJECTED = "SLURM_REJECTED"


@strawberry.type(description="The job was submitted (or found, for a repeated key).")
class JobSubmitted:
    job: Job
    created: bool = strawberry.field(
        description="False when an earlier call with the same clientMutationId created the job."
    )
    client_mutation_id: str | None


@strawberry.type(description="Nothing was submitted; `message` says why, in Slurm's words.")
class SubmitRejected:
    code: RejectionCode
    message: str
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    client_mutation_id: str | None


@strawberry.type(description="The action was done; `job` is the job as Slurm now shows it.")
class JobActionDone:
    job: Job


@strawberry.type(description="The action was refused; nothing changed.")
class JobActionRejected:
    code: RejectionCode
    message: str
    field: str | None


SubmitJobPayload = Annotated[JobSubmitted | SubmitRejected, strawberry.union("SubmitJobPayload")]
JobActionPayload = Annotated[
    JobActionDone | JobActionRejected, strawberry.union("JobActionPayload")
]


def submit_payload(outcome: Written | Rejected, key: str | None) -> JobSubmitted | SubmitRejected:
    if isinstance(outcome, Rejected):
        code = RejectionCode(outcome.code.value)
        return SubmitRejected(
            code=code, message=outcome.message, field=outcome.field, client_mutation_id=key
        )
    job = Job.from_row(outcome.row, outcome.snapshot)
    return JobSubmitted(job=job, created=outcome.created, client_mutation_id=key)


def action_payload(outcome: Written | Rejected) -> JobActionDone | JobActionRejected:
    if isinstance(outcome, Rejected):
        code = RejectionCode(outcome.code.value)
        return JobActionRejected(code=code, message=outcome.message, field=outcome.field)
    return JobActionDone(job=Job.from_row(outcome.row, outcome.snapshot))
