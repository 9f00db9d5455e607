"""Dependencies a write may name: under SLURM_GRAPHQL_JOB_VISIBILITY=own, only jobs the requester
may see.

Slurm accepts a dependency on any user's job and refuses one on a job it does not know, so a
`dependencies` field would tell whether another user's job exists. Under `own`, a write naming
dependencies first looks them up (one round trip, only then), and a job the requester may not
see is refused exactly as a missing one, before anything is submitted or changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from resolvers.selection import job_matches_id
from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from resolvers.slurm.job_fields import Dependency
from resolvers.slurm.jobs import new_boundary, parse_squeue, squeue_command
from resolvers.visibility import Visibility
from transport.base import Transport


async def unseen_dependency(
    transport: Transport, visibility: Visibility, dependencies: Sequence[Dependency]
) -> str | None:
    """The first job id in `dependencies` that `visibility` does not see (another user's, or
    none at all), or None. Raises if Slurm cannot be asked."""
    job_ids = sorted({job_id for dependency in dependencies for job_id in dependency.job_ids})
    if visibility.everyone or not job_ids:
        return None
    boundary = new_boundary()
    # One squeue per id, in one batch: squeue given several ids fails as a whole for one unknown.
    results = await transport.run([squeue_command(boundary, [job_id]) for job_id in job_ids])
    for job_id, result in zip(job_ids, results, strict=True):
        try:
            rows = parse_squeue(check(result).stdout, boundary)
        except SlurmError as exc:
            if exc.kind is not SlurmErrorKind.INVALID_JOB_ID:
                raise
            rows = []
        named = [row for row in rows if job_matches_id(row.fields(), job_id)]
        if not named or not all(visibility.sees(row.user) for row in named):
            return job_id
    return None
