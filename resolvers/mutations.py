"""Writes: submit a job, or act on one, as the requesting user, in one round trip each.

The outcome is data: `Written` (the job as Slurm reports it right after the write) or `Rejected`
(a typed reason a client can act on). Only a cluster that cannot be reached raises. After a write
the cluster's cached snapshot is dropped, so the writer's next query sees what it did.

What a write reports goes through the requester's Visibility like any read: the job on a view
filtered for them. Under SLURM_GRAPHQL_JOB_VISIBILITY=own, acting on another user's job is refused
on the head node before the action runs, with the very rejection a missing job gets
(`not_found`), so a write cannot tell the two apart either.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.dependencies import unseen_dependency
from resolvers.identity import Identity
from resolvers.slurm.actions import (
    CONTROL_JOB_ID,
    FETCH_FAILED,
    NOT_VISIBLE,
    control_command,
    keyed_job_matches,
    parse_submit,
    primary_row,
    submit_command,
)
from resolvers.slurm.errors import (
    UNAVAILABLE,
    CommandFailed,
    ParseError,
    SlurmError,
    SlurmErrorKind,
    check,
    slurm_message,
    without_internals,
)
from resolvers.slurm.job_fields import Dependency, InvalidSubmission
from resolvers.slurm.jobs import JobRow, new_boundary, parse_squeue
from resolvers.slurm.sbatch import SubmitRequest, sbatch_arguments
from resolvers.slurm.version import parse_version, version_command
from resolvers.snapshot import Need, Snapshot
from resolvers.source import SnapshotSource
from resolvers.visibility import Visibility
from transport.base import Command, CommandResult


class Rejection(enum.StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    INVALID_STATE = "INVALID_STATE"
    SLURM_REJECTED = "SLURM_REJECTED"


@dataclass(frozen=True)
class Rejected:
    code: Rejection
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Written:
    row: JobRow
    # The job's rows as Slurm showed them right after the write: the requester's view of them.
    snapshot: Snapshot
    created: bool = True


_REJECTIONS = {
    SlurmErrorKind.ACCESS_DENIED: Rejection.PERMISSION_DENIED,
    SlurmErrorKind.INVALID_JOB_ID: Rejection.JOB_NOT_FOUND,
    SlurmErrorKind.INVALID_STATE: Rejection.INVALID_STATE,
}


def not_found(job_id: str) -> Rejected:
    """The one answer for a job that does not exist and for one the requester may not see."""
    return Rejected(Rejection.JOB_NOT_FOUND, f"no job {job_id}")


async def _dependency_rejected(
    source: SnapshotSource, visibility: Visibility, dependencies: Sequence[Dependency]
) -> Rejected | None:
    """Under `own`, a dependency on a job the requester may not see, refused as a missing one."""
    unseen = await unseen_dependency(source.transport, visibility, dependencies)
    if unseen is None:
        return None
    return Rejected(Rejection.INVALID_INPUT, f"no job {unseen}", "dependencies")


def _rejection(result: CommandResult) -> Rejected | None:
    """None if `result` succeeded; the rejection if Slurm refused; raises if Slurm is down."""
    if result.refused:  # the transport would not act as this user (UID floor, unknown user)
        return Rejected(Rejection.PERMISSION_DENIED, without_internals(result.stderr.strip()[:500]))
    if result.exit_code == 66 and NOT_VISIBLE in result.stderr:
        return Rejected(Rejection.JOB_NOT_FOUND, NOT_VISIBLE)
    if result.exit_code == 65 and FETCH_FAILED in result.stderr:
        # The head node's AWS CLI may name its role and instance (an AccessDenied's ARN).
        message = without_internals(result.stderr.split(FETCH_FAILED, 1)[1].strip()[:500])
        return Rejected(Rejection.INVALID_INPUT, f"cannot fetch: {message}", "scriptS3Uri")
    try:
        check(result)
    except SlurmError as exc:
        if exc.kind in UNAVAILABLE:  # the cluster's failure, not the request's: an error
            raise
        code = _REJECTIONS.get(exc.kind, Rejection.SLURM_REJECTED)
        return Rejected(code, exc.message or exc.kind.value)
    except CommandFailed as exc:
        message = slurm_message(exc.stderr) or f"exited with status {exc.exit_code}"
        return Rejected(Rejection.SLURM_REJECTED, message)
    return None


async def _run(source: SnapshotSource, command: Command) -> CommandResult:
    """Run a write's command. Until the source knows its Slurm version, `scontrol --version`
    rides along in the same round trip, so the write's answer resolves `%b` in output paths
    as a query's does (resolvers/slurm/filename.py)."""
    if source.version is not None:
        [result] = await source.transport.run([command])
        await source.written()
        return result
    result, version = await source.transport.run([command, version_command()])
    await source.written()
    # Unparsable, the answer's paths holding %b stay null, as they would have been.
    with contextlib.suppress(ParseError):
        if version.exit_code == 0:
            source.version = parse_version(version.stdout)
    return result


def _written(
    source: SnapshotSource,
    rows: Sequence[JobRow],
    row: JobRow,
    created: bool,
    visibility: Visibility,
) -> Written | None:
    """The write's outcome as the requester may see it; None if they may not see the job."""
    source.invalidate()
    if not visibility.sees(row.user):
        return None
    needs = Need.JOBS | (Need.VERSION if source.version is not None else Need.NOTHING)
    snapshot = Snapshot(
        cluster=source.cluster,
        taken_at=time.time(),
        needs=needs,
        jobs=tuple(rows),
        version=source.version,
    )
    return Written(row, snapshot.seen_by(visibility), created)


async def submit_job(
    source: SnapshotSource,
    identity: Identity,
    visibility: Visibility,
    request: SubmitRequest,
    aws_cli: str = "aws",
) -> Written | Rejected:
    try:
        environment, options = sbatch_arguments(request)
    except InvalidSubmission as exc:
        return Rejected(Rejection.INVALID_INPUT, exc.message, exc.field)
    if rejected := await _dependency_rejected(source, visibility, request.dependencies):
        return rejected
    boundary = new_boundary()
    script = request.script_s3_uri or (request.script or "").encode()
    command = submit_command(
        boundary,
        request.client_mutation_id,
        environment,
        options,
        script,
        identity.user,
        aws_cli,
    )
    result = await _run(source, command)
    if (rejected := _rejection(result)) is not None:
        return rejected
    submitted = parse_submit(result.stdout, boundary)
    row = primary_row(submitted.rows, submitted.job_id)
    if row is None:
        return Rejected(Rejection.JOB_NOT_FOUND, f"job {submitted.job_id} ended and was purged")
    key = request.client_mutation_id
    if not submitted.created and key is not None and not keyed_job_matches(row, identity.user, key):
        # The head node's program matched rows of this user only; checked again here, so that a
        # forged row can never hand out another user's job.
        return Rejected(
            Rejection.INVALID_INPUT,
            "no job of yours carries this clientMutationId as Slurm reports it; use a new key",
            "clientMutationId",
        )
    written = _written(source, submitted.rows, row, submitted.created, visibility)
    # Submitted as the requester, a job is theirs: this guards the idempotency lookup.
    return written or Rejected(Rejection.JOB_NOT_FOUND, "no job of yours carries this key")


async def control_job(
    source: SnapshotSource,
    identity: Identity,
    visibility: Visibility,
    job_id: str,
    action: Sequence[str],
    dependencies: Sequence[Dependency] = (),
) -> Written | Rejected:
    """Run `action` (an argv naming `job_id`, and the `dependencies` it sets) and report the
    job afterwards. A job the requester may not see is refused on the head node before the
    action, as a missing one."""
    if not CONTROL_JOB_ID.match(job_id):
        return Rejected(
            Rejection.INVALID_INPUT, f"{job_id[:40]!r} is not a job id (e.g. 42 or 42_3)", "id"
        )
    if not visibility.everyone and visibility.owner is None:
        return not_found(job_id)  # sees no job at all
    if rejected := await _dependency_rejected(source, visibility, dependencies):
        return rejected
    boundary = new_boundary()
    owner = None if visibility.everyone else visibility.owner
    command = control_command(boundary, job_id, action, identity.control_user(), owner)
    result = await _run(source, command)
    if (rejected := _rejection(result)) is not None:
        if rejected.code is Rejection.JOB_NOT_FOUND:
            return not_found(job_id)  # in our words: Slurm's would tell the two cases apart
        return rejected
    rows = parse_squeue(result.stdout, boundary)
    row = next((r for r in rows if job_id in (r.display_id, str(r.job_id))), None)
    if row is None and rows:
        row = rows[0]
    if row is None:
        return not_found(job_id)
    return _written(source, rows, row, False, visibility) or not_found(job_id)
