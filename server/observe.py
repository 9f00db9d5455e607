"""One record per HTTP request: its id, operation, outcome and transport round trips, logged as
one line when it ends and counted in the metrics. WebSocket operations get records and lines of
their own (server/ws_observe.py).

A request's id is the server's own: a fresh 32-hex id, or under Lambda API Gateway's request id
(else the invocation's), so that our line matches theirs in CloudWatch. A caller's
`X-Request-Id` never becomes the id the audit trail trusts: it is kept, sanitised and capped, as
the separate `client_request_id`, to be correlated with the caller's own logs.

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

from resolvers.context import RequestIds
from resolvers.log_values import loggable

if TYPE_CHECKING:
    from strawberry.types import ExecutionResult

    from server.operations import Operation

logger = logging.getLogger("slurm_graphql.request")

GRAPHQL_PATH = "/graphql"
# The method of a WebSocket connection's line (its operations' lines say WS).
CONNECTION_METHOD = "WEBSOCKET"
# Load balancers and Prometheus ask these every few seconds: their lines are debug, not info.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# An id from API Gateway or the Lambda runtime is logged as it is, so it must look like one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}\Z")
# A caller's id is logged beside ours: each character outside this inert alphabet becomes `_`.
_CLIENT_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")
MAX_CLIENT_REQUEST_ID = 128


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    client_request_id: str | None = None  # the caller's X-Request-Id: theirs, not trusted
    protocol: str | None = None  # how a streamed or WebSocket operation came: sse, graphql-ws…
    connection_id: str | None = None  # the WebSocket connection a WS operation came on
    operation: str | None = None
    operation_type: str | None = None
    outcome: str | None = None  # set for executed operations: ok, error or refused
    cached: bool = False
    transport_calls: int = 0


current_request: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "slurm_graphql_request", default=None
)

# Called once per finished /graphql request with the record, its status and its duration; and
# per WebSocket operation, with status 0 (it has none; its record's outcome says how it went).
RequestObserver = Callable[[RequestRecord, int, float], None]

# The observers of the WebSocket connection being served, for its operations (ws_observe.py).
current_observers: contextvars.ContextVar[tuple[RequestObserver, ...]] = contextvars.ContextVar(
    "slurm_graphql_observers", default=()
)


def note_result(
    operation: Operation | None,
    operation_name: str | None,
    result: ExecutionResult,
    cached: bool = False,
) -> None:
    """Tell the current request which operation (as its document selects it) it ran and how
    that went."""
    record = current_request.get()
    if record is None:
        return
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


def server_request_id(scope: Scope) -> str:
    """Under Lambda, API Gateway's request id or else the invocation's, so that our line matches
    theirs in CloudWatch; else a new one. Never anything the caller sent."""
    event = scope.get("aws.event")
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    candidates = (
        request_context.get("requestId") if isinstance(request_context, dict) else None,
        getattr(scope.get("aws.context"), "aws_request_id", None),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and _REQUEST_ID.match(candidate):
            return candidate
    return uuid.uuid4().hex


def client_request_id(scope: Scope) -> str | None:
    """The caller's `X-Request-Id`, capped and with anything outside an inert alphabet replaced,
    so it can neither forge a log line nor pass for one of ours; None when absent or empty."""
    sent = Headers(scope=scope).get("x-request-id")
    if not sent:
        return None
    return _CLIENT_UNSAFE.sub("_", sent[:MAX_CLIENT_REQUEST_ID])


def new_record(scope: Scope, method: str, path: str) -> RequestRecord:
    """A record with the server's own id and, apart, the caller's."""
    return RequestRecord(server_request_id(scope), method, path, client_request_id(scope))


def current_ids() -> RequestIds:
    """The ids of the request or WebSocket operation this task serves (empty outside one): the
    request context reads them here, as one WebSocket context serves many operations."""
    record = current_request.get()
    if record is None:
        return RequestIds()
    return RequestIds(record.request_id, record.client_request_id)


class ObserveMiddleware:
    """Gives each HTTP request the server's id, echoes it in the response, and logs and
    measures the request when it ends."""

    def __init__(self, app: ASGIApp, observers: tuple[RequestObserver, ...] = ()) -> None:
        self.app = app
        self.observers = observers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._connection(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = new_record(scope, scope["method"], scope["path"])
        request_id = record.request_id
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

    async def _connection(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket connection's record, current while it lasts (its operations get their
        own, server/ws_observe.py); its id is echoed in the upgrade's response."""
        record = new_record(scope, CONNECTION_METHOD, scope["path"])

        async def send_with_id(message: Message) -> None:
            # Accepted, or refused with an HTTP answer (the denial-response extension).
            if message["type"] in ("websocket.accept", "websocket.http.response.start"):
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", record.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = current_request.set(record)
        observing = current_observers.set(self.observers)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_observers.reset(observing)
            current_request.reset(token)
            log_request(record, None, time.perf_counter() - started)

    def _finish(self, record: RequestRecord, status: int, seconds: float) -> None:
        if record.path == GRAPHQL_PATH:
            for observe in self.observers:
                observe(record, status, seconds)
        log_request(record, status, seconds)


def log_request(record: RequestRecord, status: int | None, seconds: float) -> None:
    """The request's line: debug for probes and scrapes, info for the rest. `status` is None
    for a WebSocket operation, which has none of its own."""
    level = logging.DEBUG if record.path in QUIET_PATHS else logging.INFO
    if not logger.isEnabledFor(level):
        return
    outcome = outcome_of(record, status or 200)
    fields = {
        "request_id": record.request_id,
        "client_request_id": record.client_request_id,
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
    text = [
        record.method,
        record.path,
        "-" if status is None else str(status),
        f"{seconds * 1000:.1f} ms",
        f"operation={loggable(record.operation or '-')}",
        f"outcome={outcome}",
        f"transport_calls={record.transport_calls}",
        f"request_id={record.request_id}",
    ]
    for name, value in (
        ("protocol", record.protocol),
        ("connection_id", record.connection_id),
        ("client_request_id", record.client_request_id),
    ):
        if value is not None:
            fields[name] = value
            text.append(f"{name}={loggable(value)}")
    logger.log(level, "%s", " ".join(text), extra={"request": fields})
