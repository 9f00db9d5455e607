"""The audit trail: one structured log line per mutation, whatever its outcome.

Fields: request id (the server's; the id the caller sent, if any, apart as
`client_request_id`), identity (the authenticated user, or the anonymous account), whether it
was authenticated, the POSIX user Slurm saw, cluster, operation, job id and outcome (`done`, a
rejection code, or `error`). With SLURM_GRAPHQL_LOG_FORMAT=json the fields are keys of the line's
JSON object. Refusals about identity are audited too: a mutation sent anonymously
(`UNAUTHENTICATED`, nothing runs) and verified claims the service will not act as
(`PERMISSION_DENIED`, with the claimed name).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Awaitable

from resolvers.context import RequestContext, RequestIds
from resolvers.identity import Unauthenticated
from resolvers.log_values import loggable
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
        **_ids(context),
        "identity": identity.user,
        "authenticated": identity.authenticated,
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


def refuse_anonymous(
    context: RequestContext, operation: str, cluster: str | None, job_id: str | None
) -> None:
    """Raises Unauthenticated, audited, unless the request's identity is authenticated: writes
    need to know who is writing. Called before anything of the mutation is built."""
    identity = context.identity
    if identity.authenticated:
        return
    fields: dict[str, object] = {
        **_ids(context),
        "identity": identity.user,
        "authenticated": False,
        "cluster": cluster,
        "operation": operation,
        "job_id": job_id,
    }
    result = "UNAUTHENTICATED"
    logger.info(_line(fields, result), extra={"request": {**fields, "outcome": result}})
    raise Unauthenticated(f"{operation} needs an authenticated identity")


def audit_refusal(ids: RequestIds, claimed: str, reason: str, outcome: str) -> None:
    """One audit line for a request refused for its identity, with the name its claims gave."""
    fields: dict[str, object] = {
        **_fields_of(ids),
        "identity": claimed[:200],
        "authenticated": False,
        "operation": "authenticate",
        "reason": reason,
    }
    logger.warning(_line(fields, outcome), extra={"request": {**fields, "outcome": outcome}})


def _ids(context: RequestContext) -> dict[str, object]:
    return _fields_of(context.ids())


def _fields_of(ids: RequestIds) -> dict[str, object]:
    fields: dict[str, object] = {"request_id": ids.request_id}
    if ids.client_request_id is not None:
        fields["client_request_id"] = ids.client_request_id
    return fields


def _line(fields: dict[str, object], outcome: str) -> str:
    # Names and ids here may be a client's choice: escaped, so that each audit record is one line.
    shown = " ".join(f"{key}={loggable(value)}" for key, value in fields.items())
    return f"audit {shown} outcome={loggable(outcome)}"


def _server_user() -> str:
    return getpass.getuser()
