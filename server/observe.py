"""One record per HTTP request: its id, operation, outcome and transport round trips, logged as
one line when it ends and counted in the metrics.

The record lives in a context variable, so the code that learns something about the request (the
GraphQL app learns the operation, a transport wrapper counts round trips) writes to it without
being handed it. Snapshot fetches run in tasks created during the request; asyncio copies the
context into them, so their round trips are counted for the request that started them.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.operations import selected_operation

if TYPE_CHECKING:
    from strawberry.types import ExecutionResult

logger = logging.getLogger("slurm_graphql.request")

GRAPHQL_PATH = "/graphql"
# Load balancers and Prometheus ask these every few seconds: their lines are debug, not info.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# An incoming id is echoed and logged, so it is held to a short, inert alphabet.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}\Z")


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    operation: str | None = None
    operation_type: str | None = None
    outcome: str | None = None  # set for executed operations: ok, error or refused
    cached: bool = False
    transport_calls: int = 0


current_request: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "slurm_graphql_request", default=None
)

# Called once per finished /graphql request with the record, its status and its duration.
RequestObserver = Callable[[RequestRecord, int, float], None]


def note_result(
    query: str | None, operation_name: str | None, result: ExecutionResult, cached: bool = False
) -> None:
    """Tell the current request which operation it ran and how that went."""
    record = current_request.get()
    if record is None:
        return
    operation = selected_operation(query, operation_name)
    record.operation = operation.name if operation else operation_name
    record.operation_type = operation.type if operation else None
    record.outcome = "error" if result.errors else "ok"
    record.cached = cached


def note_refused(operation_type: str, operation_name: str | None) -> None:
    """Tell the current request its operation was refused before execution."""
    record = current_request.get()
    if record is not None:
        record.operation, record.operation_type = operation_name, operation_type
        record.outcome = "refused"


def outcome_of(record: RequestRecord, status: int) -> str:
    """The outcome label: the operation's when it ran, else what the HTTP status says."""
    if record.outcome is not None:
        return record.outcome
    if status >= 500:
        return "failed"
    return "rejected" if status >= 400 else "ok"


def _request_id(scope: Scope) -> str:
    """The caller's id if sane; under Lambda, API Gateway's request id or else the invocation's,
    so that our line matches theirs in CloudWatch; else a new one."""
    event = scope.get("aws.event")
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    candidates = (
        Headers(scope=scope).get("x-request-id"),
        request_context.get("requestId") if isinstance(request_context, dict) else None,
        getattr(scope.get("aws.context"), "aws_request_id", None),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and _REQUEST_ID.match(candidate):
            return candidate
    return uuid.uuid4().hex


class ObserveMiddleware:
    """Gives each HTTP request an id (the caller's `X-Request-Id` when it sends a sane one),
    echoes it in the response, and logs and measures the request when it ends."""

    def __init__(self, app: ASGIApp, observers: tuple[RequestObserver, ...] = ()) -> None:
        self.app = app
        self.observers = observers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        record = RequestRecord(request_id, scope["method"], scope["path"])
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        token = current_request.set(record)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request.reset(token)
            self._finish(record, status, time.perf_counter() - started)

    def _finish(self, record: RequestRecord, status: int, seconds: float) -> None:
        outcome = outcome_of(record, status)
        if record.path == GRAPHQL_PATH:
            for observe in self.observers:
                observe(record, status, seconds)
        level = logging.DEBUG if record.path in QUIET_PATHS else logging.INFO
        if not logger.isEnabledFor(level):
            return
        fields = {
            "request_id": record.request_id,
            "method": record.method,
            "path": record.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "operation": record.operation,
            "operation_type": record.operation_type,
            "outcome": outcome,
            "cached": record.cached,
            "transport_calls": record.transport_calls,
        }
        logger.log(
            level,
            "%s %s %d %.1f ms operation=%s outcome=%s transport_calls=%d request_id=%s",
            record.method,
            record.path,
            status,
            seconds * 1000,
            record.operation or "-",
            outcome,
            record.transport_calls,
            record.request_id,
            extra={"request": fields},
        )
