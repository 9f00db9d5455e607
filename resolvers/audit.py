"""The audit trail: one structured log line per mutation, whatever its outcome.

Fields: request id, identity (the token's user, or the server's), the POSIX user Slurm saw,
cluster, operation, job id and outcome (`done`, a rejection code, or `error`). With
SLURM_GRAPHQL_LOG_FORMAT=json the fields are keys of the line's JSON object.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Awaitable

from resolvers.context import RequestContext
from resolvers.mutations import Rejected, Written

logger = logging.getLogger("slurm_graphql.audit")


async def audited(
    context: RequestContext,
    operation: str,
    cluster: str | None,
    job_id: str | None,
    work: Awaitable[Written | Rejected],
) -> Written | Rejected:
    """`work`'s outcome, after logging it (and logging failures before they propagate)."""
    identity = context.identity
    fields: dict[str, object] = {
        "request_id": context.request_id,
        "identity": identity.user or "(server)",
        "admin": identity.admin,
        "posix_user": (identity.control_user() if job_id else identity.user) or _server_user(),
        "cluster": cluster or (context.cluster_names[0] if context.cluster_names else None),
        "operation": operation,
        "job_id": job_id,
    }
    try:
        outcome = await work
    except Exception:
        logger.info(_line(fields, "error"), extra={"request": {**fields, "outcome": "error"}})
        raise
    if isinstance(outcome, Written):
        fields["job_id"] = str(outcome.row.job_id)
        result = "done"
    else:
        result = outcome.code.value
    logger.info(_line(fields, result), extra={"request": {**fields, "outcome": result}})
    return outcome


def _line(fields: dict[str, object], outcome: str) -> str:
    shown = " ".join(f"{key}={value}" for key, value in fields.items())
    return f"audit {shown} outcome={outcome}"


def _server_user() -> str:
    return getpass.getuser()
