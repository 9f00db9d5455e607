"""The root Mutation: submit jobs and act on them, as the requesting user."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import strawberry

from resolvers.audit import audited, refuse_anonymous
from resolvers.context import RequestContext
from resolvers.identity import Unauthenticated
from resolvers.mutations import Rejected, Rejection, Written, control_job, submit_job
from resolvers.slurm.control import (
    cancel_argv,
    hold_argv,
    release_argv,
    requeue_argv,
    update_argv,
)
from resolvers.slurm.job_fields import Dependency, InvalidSubmission
from schema.errors import ErrorCode, coded, expected_errors_as_graphql
from schema.inputs import SubmitJobInput, UpdateJobInput
from schema.payloads import JobActionPayload, SubmitJobPayload, action_payload, submit_payload


async def _act(
    info: strawberry.Info,
    cluster: str | None,
    id: str,
    argv: Callable[[str], list[str]],
    dependencies: Sequence[Dependency] = (),
) -> JobActionPayload:
    context: RequestContext = info.context
    operation = info.field_name
    _authenticated(context, operation, cluster, id)

    async def run() -> Written | Rejected:
        source = context.sources[context.resolve_cluster_name(cluster)]
        try:
            action = argv(id)
        except InvalidSubmission as exc:
            return Rejected(Rejection.INVALID_INPUT, exc.message, exc.field)
        return await control_job(
            source, context.identity, context.visibility, id, action, dependencies
        )

    return action_payload(
        await expected_errors_as_graphql(audited(context, operation, cluster, id, run()))
    )


def _authenticated(
    context: RequestContext, operation: str, cluster: str | None, job_id: str | None
) -> None:
    """Every mutation starts here: an anonymous request is refused (UNAUTHENTICATED, audited)
    before any command is built."""
    try:
        refuse_anonymous(context, operation, cluster, job_id)
    except Unauthenticated as exc:
        raise coded(ErrorCode.UNAUTHENTICATED, str(exc)) from exc


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Submit a batch job as the requesting user.")
    async def submit_job(
        self, info: strawberry.Info, input: SubmitJobInput, cluster: str | None = None
    ) -> SubmitJobPayload:
        context: RequestContext = info.context
        _authenticated(context, "submitJob", cluster, None)

        async def run() -> Written | Rejected:
            source = context.sources[context.resolve_cluster_name(cluster)]
            request = input.to_request()
            return await submit_job(
                source, context.identity, context.visibility, request, context.aws_cli
            )

        outcome = await expected_errors_as_graphql(
            audited(context, "submitJob", cluster, None, run())
        )
        return submit_payload(outcome, input.client_mutation_id)

    @strawberry.mutation(description="Cancel a job, or send it a signal (scancel).")
    async def cancel_job(
        self, info: strawberry.Info, id: str, cluster: str | None = None, signal: str | None = None
    ) -> JobActionPayload:
        return await _act(info, cluster, id, lambda job: cancel_argv(job, signal))

    @strawberry.mutation(description="Hold a pending job: it will not start until released.")
    async def hold_job(
        self, info: strawberry.Info, id: str, cluster: str | None = None
    ) -> JobActionPayload:
        return await _act(info, cluster, id, hold_argv)

    @strawberry.mutation(description="Release a held job.")
    async def release_job(
        self, info: strawberry.Info, id: str, cluster: str | None = None
    ) -> JobActionPayload:
        return await _act(info, cluster, id, release_argv)

    @strawberry.mutation(description="Requeue a job (held afterwards when `hold` is true).")
    async def requeue_job(
        self, info: strawberry.Info, id: str, cluster: str | None = None, hold: bool = False
    ) -> JobActionPayload:
        return await _act(info, cluster, id, lambda job: requeue_argv(job, hold))

    @strawberry.mutation(description="Change a job's limits, name, comment, partition and more.")
    async def update_job(
        self, info: strawberry.Info, id: str, input: UpdateJobInput, cluster: str | None = None
    ) -> JobActionPayload:
        update = input.to_update()
        return await _act(
            info, cluster, id, lambda job: update_argv(job, update), update.dependencies or ()
        )
