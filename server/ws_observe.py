"""Ids and request lines for operations that are not one HTTP request each: every operation on
a WebSocket (graphql-transport-ws `subscribe`, graphql-ws `start`) and every subscription
streamed over SSE or multipart.

A WebSocket connection gets a record of its own in ObserveMiddleware (its id is the
`connection_id` of its operations; refusals of its credentials are audited with it, and its
line is written when it closes). Each operation on it gets a fresh record, with a fresh id, set
in the context variable while strawberry creates the operation's task: asyncio copies the
context into the task, so the audit trail, the round-trip count and the masked-error id all see
the operation's record, not the connection's. Its line is written when its task ends, with no
HTTP status (`status: null`) and its `protocol`, and it is counted in the metrics as a GraphQL
request, as an HTTP one is.

A streamed subscription is one HTTP request, which already has its id and line; it learns here
which operation it ran and how that went.

Which operation a record ran is read from strawberry's own parse of the document (NoteOperation,
a schema extension), never from a parse of our own: strawberry's is bounded (the token cap) and
happens only for operations admitted past authentication and the rate limit, so a client that
is refused pays for nothing and makes us pay for nothing either.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from strawberry.extensions import SchemaExtension

from server.observe import (
    GRAPHQL_PATH,
    RequestRecord,
    current_observers,
    current_request,
    log_request,
)

WS_METHOD = "WS"
MAX_NAME = 200  # characters of a client's operationName kept for a refused operation's line


@contextmanager
def operation_record(protocol: str, payload: object) -> Iterator[RequestRecord]:
    """A new record for the WebSocket operation whose `subscribe`/`start` payload is `payload`,
    current inside the block (where strawberry creates the operation's task)."""
    connection = current_request.get()
    record = RequestRecord(
        uuid.uuid4().hex,
        WS_METHOD,
        connection.path if connection is not None else GRAPHQL_PATH,
        client_request_id=connection.client_request_id if connection is not None else None,
        protocol=protocol,
        connection_id=connection.request_id if connection is not None else None,
    )
    if isinstance(payload, Mapping) and isinstance(payload.get("operationName"), str):
        # What the client calls it, until (and unless) strawberry's parse says what it is.
        record.operation = payload["operationName"][:MAX_NAME]
    token = current_request.set(record)
    try:
        yield record
    finally:
        current_request.reset(token)


def log_when_done(record: RequestRecord, task: asyncio.Task[Any] | None) -> None:
    """Write `record`'s line, and count it in the metrics as a GraphQL request, when `task`
    ends (now, with outcome `refused`, if nothing runs)."""
    started = time.perf_counter()
    observers = current_observers.get()  # the connection's, while its handler runs

    def finish(seconds: float) -> None:
        for observe in observers:
            observe(record, 0, seconds)
        log_request(record, None, seconds)

    if task is None:
        record.outcome = record.outcome or "refused"
        finish(0.0)
        return

    def done(_: asyncio.Task[Any]) -> None:
        if record.outcome is None:
            # Cancelled: stopped by the client (`complete`) or its socket closed. (graphql-ws
            # ends a stopped operation's task itself, so there it reads `ok`.)
            record.outcome = "stopped" if task.cancelled() else "ok"
        finish(time.perf_counter() - started)

    task.add_done_callback(done)


def note_sent(message: Mapping[str, Any]) -> None:
    """Learn the current WebSocket operation's outcome from a message sent for it: any error,
    in a result or as the operation's `error` message, makes it `error`."""
    record = current_request.get()
    if record is None or record.method != WS_METHOD or record.connection_id is None:
        return  # connection-level messages (ack, pong, keep-alive)
    kind = message.get("type")
    payload = message.get("payload")
    if kind == "error" or (
        kind in ("next", "data") and isinstance(payload, Mapping) and payload.get("errors")
    ):
        record.outcome = "error"
    elif kind in ("next", "data") and record.outcome is None:
        record.outcome = "ok"


def note_stream(protocol: str) -> None:
    """Tell the current HTTP request it streams its operation (SSE or multipart)."""
    record = current_request.get()
    if record is not None:
        record.protocol = protocol


def note_stream_result(has_errors: bool) -> None:
    """One event of the current streamed request: an error in any makes the outcome `error`."""
    record = current_request.get()
    if record is None or record.protocol is None:
        return
    if has_errors:
        record.outcome = "error"
    elif record.outcome is None:
        record.outcome = "ok"


class NoteOperation(SchemaExtension):
    """Tells the current record (HTTP request or WebSocket operation) which operation it runs,
    once strawberry has parsed the document."""

    def on_parse(self) -> Iterator[None]:
        yield
        record = current_request.get()
        context = self.execution_context
        if record is None or context.graphql_document is None:
            return
        if context.pre_execution_errors:
            # Refused over a cap (server/documents.py): the document parsed is a stand-in.
            return
        try:
            operation_type = context.operation_type.value
        except RuntimeError:  # the document selects no operation: execution says so
            return
        record.operation, record.operation_type = context.operation_name, operation_type


__all__ = [
    "NoteOperation",
    "log_when_done",
    "note_sent",
    "note_stream",
    "note_stream_result",
    "operation_record",
]
