"""The WebSocket handlers of both protocols, with the limits of server/channel_limits.py.

Each `subscribe` (graphql-transport-ws) or `start` (graphql-ws) message is one operation: it
spends a token of the client's rate limit and holds one of its stream slots (counted across all
its connections and SSE streams) until it ends, however it ends (completed, stopped by the
client, failed, or its socket closed): the slot is tied to the operation's task.

A refused operation gets an error for its own id, coded RATE_LIMITED (with `retryAfter`
seconds) or TOO_MANY_SUBSCRIPTIONS, and the socket stays open for the client's other
operations. A client that keeps sending after REFUSALS_BEFORE_CLOSE refusals in a row (without
an admitted operation between them) is not backing off: its socket is closed with 4429.

Each operation also gets its own request id and request line (server/ws_observe.py).

A message that is not JSON closes the socket with 4400, on both protocols.

Once `connection_init` has said who the client is, its connection also counts against the
identity's WebSocket connections; past the cap the socket is closed with 4429.

Credentials (server/credentials.py): each operation first checks the connection's credential
again, and the socket is closed with 4401 when it fails or when the identity expires. An address
blocked for failed authentications (server/auth_failures.py) is closed with 4429 at
`connection_init`, before its payload is looked at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from starlette.types import Scope
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage, StartMessage

from resolvers.context import RequestContext
from server.auth_failures import AuthFailures, blocked_error
from server.channel_limits import (
    CLOSE_TOO_MANY,
    ChannelLimits,
    rate_limited_error,
    too_many_streams_error,
)
from server.client_address import client_address
from server.credentials import CLOSE_UNAUTHENTICATED, CredentialCheck, close_at_expiry
from server.message_limit import CLOSE_MALFORMED, MalformedMessage
from server.ws_observe import log_when_done, note_sent, operation_record

REFUSALS_BEFORE_CLOSE = 20


class LimitedView(Protocol):
    """What the handlers need of the GraphQL view."""

    channel_limits: ChannelLimits
    auth_failures: AuthFailures
    credential_check: CredentialCheck

    def channel_key(self, context: Any, scope: Scope) -> str: ...

    def identity_key(self, context: Any) -> str | None: ...

    def persisted_payload(self, payload: Any, context: Any) -> dict[str, Any] | None:
        """Resolves a subscribe payload's persisted document in place (server/persisted.py);
        the coded error refusing it, or None."""
        ...


class _Gate:
    """The per-connection half of the limits: which key this socket's operations spend, how
    many refusals in a row it has had, and the identity slot it holds."""

    def __init__(self, view: LimitedView, scope: Scope) -> None:
        self.limits = view.channel_limits
        self.view = view
        self.scope = scope
        self.refusals = 0
        self.identity_slot: str | None = None
        self.expiry: asyncio.Task[None] | None = None

    async def admit(
        self, context: Any, in_flight: int, per_connection: int | None
    ) -> dict[str, Any] | str:
        """The key whose slot the operation now holds, or the error refusing it."""
        key = self.view.channel_key(context, self.scope)
        wait = await self.limits.take(key)
        if wait > 0:
            return self._refused(rate_limited_error(wait))
        if per_connection is not None and in_flight >= per_connection:
            return self._refused(too_many_streams_error(per_connection, "connection"))
        if not await self.limits.streams.acquire(key):
            return self._refused(too_many_streams_error(self.limits.max_streams))
        self.refusals = 0
        return key

    def _refused(self, error: dict[str, Any]) -> dict[str, Any]:
        self.refusals += 1
        return error

    @property
    def should_close(self) -> bool:
        return self.refusals >= REFUSALS_BEFORE_CLOSE

    def hold_identity(self, context: Any) -> bool:
        """Count this connection for its identity; False when the identity has too many."""
        identity_key = self.view.identity_key(context)
        if identity_key is None:
            return True  # counted by address only
        key = f"identity:{identity_key}"
        if not self.limits.sockets.acquire(key):
            return False
        self.identity_slot = key
        return True

    async def guard(self, handle: Callable[[], Awaitable[None]]) -> None:
        """Run the connection's `handle`, giving its identity slot back (and stopping its
        expiry timer) however it ends."""
        try:
            await handle()
        finally:
            if self.expiry is not None:
                self.expiry.cancel()
            self.release_identity()

    async def before_init(self, websocket: Any) -> bool:
        """False, with the socket closed (4429), for an address blocked by failed
        authentications: its credential is not even looked at."""
        wait = self.view.auth_failures.retry_after(client_address(self.scope))
        if wait <= 0:
            return True
        await websocket.close(code=CLOSE_TOO_MANY, reason=blocked_error(wait)["message"])
        return False

    async def after_init(self, acknowledged: bool, context: Any, websocket: Any) -> None:
        """Once `connection_init` said who the client is: close the socket (4429) if that
        identity holds too many already; else close it (4401) when the identity expires."""
        if not acknowledged:
            return
        if not self.hold_identity(context):
            await websocket.close(code=CLOSE_TOO_MANY, reason="too many connections")
            return
        clock = self.view.credential_check.clock
        self.expiry = asyncio.create_task(close_at_expiry(context.identity, websocket, clock))

    async def credentials_hold(self, context: Any, websocket: Any) -> bool:
        """False, with the socket closed (4401), when the connection's credential no longer
        proves its identity: nothing the operation asked for runs."""
        reason = await self.view.credential_check.refusal(context)
        if reason is None:
            return True
        await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=reason)
        return False

    def release_identity(self) -> None:
        if self.identity_slot is not None:
            self.limits.sockets.release(self.identity_slot)
            self.identity_slot = None

    def tie(self, key: str, task: asyncio.Task[Any] | None) -> None:
        """Release `key`'s slot when `task` ends (now, if there is none)."""
        if task is None:
            self.limits.streams.release(key)
        else:
            task.add_done_callback(lambda _: self.limits.streams.release(key))


def _scope_of(handler: Any) -> Scope:
    # strawberry's ASGI adapter keeps starlette's WebSocket as `ws`.
    return cast(Scope, handler.websocket.ws.scope)


async def _closing_malformed(handler: Any, handle: Callable[[], Awaitable[None]]) -> None:
    """Run `handle`; a message that is not JSON (server/message_limit.py) closes with 4400."""
    try:
        await handle()
    except MalformedMessage:
        await handler.websocket.close(code=CLOSE_MALFORMED, reason="message is not valid JSON")


class LimitedTransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws, the protocol of graphql-ws (the library) and most clients."""

    _gate: _Gate

    async def handle(self) -> None:
        self._gate = _Gate(cast(LimitedView, self.view), _scope_of(self))
        handle = super().handle
        await self._gate.guard(lambda: _closing_malformed(self, handle))

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if not await self._gate.before_init(self.websocket):
            return
        await super().handle_connection_init(message)
        await self._gate.after_init(self.connection_acknowledged, self.context, self.websocket)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged or message["id"] in self.operations:
            await super().handle_subscribe(message)  # closes the socket, as the protocol says
            return
        with operation_record(GRAPHQL_TRANSPORT_WS_PROTOCOL, message.get("payload")) as record:
            task = await self._subscribe(message)
        log_when_done(record, task)

    async def _subscribe(self, message: SubscribeMessage) -> asyncio.Task[Any] | None:
        """The admitted operation's task; None when it was refused."""
        if not await self._gate.credentials_hold(self.context, self.websocket):
            return None
        refused = self._gate.view.persisted_payload(message.get("payload"), self.context)
        if refused is not None:
            await self.websocket.send_json(
                {"id": message["id"], "type": "error", "payload": [refused]}
            )
            return None
        admitted = await self._gate.admit(
            self.context, len(self.operations), self.max_subscriptions_per_connection
        )
        if isinstance(admitted, dict):
            # send_json: the protocol's typed messages do not type a coded error's extensions.
            await self.websocket.send_json(
                {"id": message["id"], "type": "error", "payload": [admitted]}
            )
            if self._gate.should_close:
                await self.websocket.close(code=CLOSE_TOO_MANY, reason="too many requests")
            return None
        try:
            await super().handle_subscribe(message)
        except BaseException:
            self._gate.tie(admitted, None)  # a malformed payload: nothing runs, nothing holds
            raise
        operation = self.operations.get(message["id"])
        task = operation.task if operation is not None else None
        self._gate.tie(admitted, task)
        return task

    async def send_message(self, message: Message) -> None:
        note_sent(cast(dict[str, Any], message))
        await super().send_message(message)


class LimitedWSHandler(BaseGraphQLWSHandler[RequestContext, None]):
    """graphql-ws, the legacy subscriptions-transport-ws protocol."""

    _gate: _Gate

    async def handle(self) -> None:
        self._gate = _Gate(cast(LimitedView, self.view), _scope_of(self))
        handle = super().handle
        await self._gate.guard(lambda: _closing_malformed(self, handle))

    async def handle_connection_init(self, message: LegacyInitMessage) -> None:
        if not await self._gate.before_init(self.websocket):
            return
        await super().handle_connection_init(message)
        await self._gate.after_init(self.connection_acknowledged, self.context, self.websocket)

    async def handle_start(self, message: StartMessage) -> None:
        if not self.connection_acknowledged:
            await super().handle_start(message)
            return
        operation_id = message["id"]
        if operation_id in self.tasks:
            # A start for an id in use replaces that operation (strawberry stops it first).
            await self.cleanup_operation(operation_id)
        with operation_record(GRAPHQL_WS_PROTOCOL, message.get("payload")) as record:
            task = await self._start(message)
        log_when_done(record, task)

    async def _start(self, message: StartMessage) -> asyncio.Task[Any] | None:
        """The admitted operation's task; None when it was refused."""
        operation_id = message["id"]
        if not await self._gate.credentials_hold(self.context, self.websocket):
            return None
        refused = self._gate.view.persisted_payload(message.get("payload"), self.context)
        if refused is not None:
            await self.websocket.send_json(
                {"type": "error", "id": operation_id, "payload": refused}
            )
            return None
        admitted = await self._gate.admit(
            self.context, len(self.tasks), self.max_subscriptions_per_connection
        )
        if isinstance(admitted, dict):
            await self.websocket.send_json(
                {"type": "error", "id": operation_id, "payload": admitted}
            )
            if self._gate.should_close:
                await self.websocket.close(code=CLOSE_TOO_MANY, reason="too many requests")
            return None
        try:
            await super().handle_start(message)
        except BaseException:
            self._gate.tie(admitted, None)  # a malformed payload: nothing runs, nothing holds
            raise
        task = self.tasks.get(operation_id)
        self._gate.tie(admitted, task)
        return task

    async def send_message(self, message: OperationMessage) -> None:
        note_sent(cast(dict[str, Any], message))
        await super().send_message(message)


__all__ = ["REFUSALS_BEFORE_CLOSE", "LimitedTransportWSHandler", "LimitedView", "LimitedWSHandler"]
