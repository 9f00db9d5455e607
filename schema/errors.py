"""Error codes clients see in `errors[].extensions.code`, and the translation to them.

Expected failures carry a stable code and a message fit for a user (Slurm's own words where they
help). Anything else is masked by the server as an internal error. A transport's own words (AWS's
error messages, with account ids and role names; the head node's stderr; instance ids, buckets)
are for operators: they go to the server's log, and the client gets a fixed message.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from graphql import GraphQLError

from resolvers.context import ClusterNotFound
from resolvers.identity import Unauthenticated
from resolvers.ids import BadUserInput
from resolvers.log_values import loggable
from resolvers.output import OutputForbidden
from resolvers.slurm.errors import (
    UNAVAILABLE,
    CommandFailed,
    SlurmError,
    SlurmErrorKind,
    slurm_message,
)
from transport.errors import (
    HeadNodeNotFound,
    OutputTooLarge,
    RequestTooLarge,
    TransportError,
    TransportThrottled,
    TransportTimeout,
    UnsafeParameter,
)


class ErrorCode(enum.StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    CLUSTER_NOT_FOUND = "CLUSTER_NOT_FOUND"
    SLURM_UNAVAILABLE = "SLURM_UNAVAILABLE"
    ACCOUNTING_UNAVAILABLE = "ACCOUNTING_UNAVAILABLE"
    SLURM_ERROR = "SLURM_ERROR"
    CLUSTER_UNAVAILABLE = "CLUSTER_UNAVAILABLE"
    TRANSPORT_TIMEOUT = "TRANSPORT_TIMEOUT"
    TRANSPORT_THROTTLED = "TRANSPORT_THROTTLED"
    OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
    UNSAFE_PARAMETER = "UNSAFE_PARAMETER"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


logger = logging.getLogger("slurm_graphql.transport")
UNREACHABLE_MESSAGE = (
    "the cluster's head node could not be reached or did not answer as expected "
    "(the server's log has the details)"
)
OUTPUT_TOO_LARGE_MESSAGE = (
    "the answer was larger than the transport can bring back (the server's log says how to "
    "configure it)"
)
REQUEST_TOO_LARGE_MESSAGE = (
    "the request is larger than the transport to the cluster carries in one command (about "
    "56 KB through AWS Systems Manager); nothing was run. A batch script that large can be "
    "submitted with scriptS3Uri"
)
UNSAFE_PARAMETER_MESSAGE = (
    "the request holds '{{', which AWS Systems Manager would resolve as a parameter reference; "
    "nothing was run"
)
# The cluster's failures (SLURM_UNAVAILABLE) in fixed words: Slurm's own name the head node, its
# ports and its files ("failed to open persistent connection to host:head:6819"). What a user can
# act on stays: which daemon is away, to try again later. Slurm's words go to the server's log.
_LOGGED = "(the server's log has Slurm's own words)"
UNAVAILABLE_MESSAGES = {
    SlurmErrorKind.CONTROLLER_UNREACHABLE: (
        f"Slurm: the controller (slurmctld) is not answering; try again later {_LOGGED}"
    ),
    SlurmErrorKind.ACCOUNTING_UNREACHABLE: (
        "Slurm: accounting (slurmdbd) is not answering, so job history, accounts and jobs "
        f"Slurm no longer holds cannot be read; try again later {_LOGGED}"
    ),
    SlurmErrorKind.AUTHENTICATION: (
        f"Slurm: the head node could not authenticate the request (munge) {_LOGGED}"
    ),
    SlurmErrorKind.NOT_INSTALLED: f"Slurm: its commands were not found on the head node {_LOGGED}",
}
# No slurmdbd configured (`sacct`: "accounting storage is disabled"): jobHistory cannot answer.
_SLURM_CODES = {
    **dict.fromkeys(UNAVAILABLE, ErrorCode.SLURM_UNAVAILABLE),
    SlurmErrorKind.ACCOUNTING_DISABLED: ErrorCode.ACCOUNTING_UNAVAILABLE,
}


def coded(code: ErrorCode, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code.value})


def to_graphql_error(exc: Exception) -> GraphQLError | None:
    """The client-facing error for an expected failure; None if the failure is unexpected."""
    if isinstance(exc, BadUserInput):
        return coded(ErrorCode.BAD_USER_INPUT, str(exc))
    if isinstance(exc, OutputForbidden):
        return coded(ErrorCode.PERMISSION_DENIED, str(exc))
    if isinstance(exc, Unauthenticated):
        return coded(ErrorCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, ClusterNotFound):
        return coded(ErrorCode.CLUSTER_NOT_FOUND, f"no cluster named {exc.args[0]!r}")
    if isinstance(exc, SlurmError):
        return _slurm_error(exc)
    if isinstance(exc, CommandFailed):
        return coded(ErrorCode.SLURM_ERROR, f"Slurm: {slurm_message(exc.stderr) or 'failed'}")
    if isinstance(exc, TransportError):
        return _transport_error(exc)
    return None


def _transport_error(exc: TransportError) -> GraphQLError:
    if isinstance(exc, HeadNodeNotFound):
        return coded(ErrorCode.CLUSTER_UNAVAILABLE, str(exc))
    if isinstance(exc, TransportThrottled):
        return coded(ErrorCode.TRANSPORT_THROTTLED, f"{exc}; try again shortly")
    if isinstance(exc, TransportTimeout):
        return coded(ErrorCode.TRANSPORT_TIMEOUT, str(exc))
    if isinstance(exc, OutputTooLarge):
        return coded(ErrorCode.OUTPUT_TOO_LARGE, OUTPUT_TOO_LARGE_MESSAGE)
    if isinstance(exc, RequestTooLarge):
        # The client's own input (a batch script) made it: theirs to shrink or send otherwise.
        return coded(ErrorCode.BAD_USER_INPUT, REQUEST_TOO_LARGE_MESSAGE)
    if isinstance(exc, UnsafeParameter):
        # Which value and where stay in the server's log: the client learns only that it was
        # refused, and nothing was run.
        return coded(ErrorCode.UNSAFE_PARAMETER, UNSAFE_PARAMETER_MESSAGE)
    return coded(ErrorCode.SLURM_UNAVAILABLE, UNREACHABLE_MESSAGE)


def _slurm_error(exc: SlurmError) -> GraphQLError:
    if exc.kind in UNAVAILABLE:
        return coded(ErrorCode.SLURM_UNAVAILABLE, UNAVAILABLE_MESSAGES[exc.kind])
    code = _SLURM_CODES.get(exc.kind, ErrorCode.SLURM_ERROR)
    return coded(code, f"Slurm: {exc.message or exc.kind.value}")


def _log_transport_detail(exc: Exception) -> None:
    """What the client's fixed message leaves out, for operators (pollers log their own)."""
    if isinstance(exc, TransportError):
        logger.warning("%s: %s", type(exc).__name__, exc)
    elif isinstance(exc, SlurmError) and exc.kind in UNAVAILABLE:
        # Slurm's words may quote what a user wrote (a job's name): one line, escaped.
        logger.warning("%s: %s", exc.kind.value, loggable(exc.detail))


T = TypeVar("T")


async def expected_errors_as_graphql(work: Awaitable[T]) -> T:
    """Let expected failures reach the client as coded errors; others stay unexpected."""
    try:
        return await work
    except Exception as exc:
        _log_transport_detail(exc)
        error = to_graphql_error(exc)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def expected_errors_raised_as_graphql() -> Iterator[None]:
    """The same for synchronous resolvers (a listing validating its filter, say)."""
    try:
        yield
    except Exception as exc:
        _log_transport_detail(exc)
        error = to_graphql_error(exc)
        if error is None:
            raise
        raise error from exc
