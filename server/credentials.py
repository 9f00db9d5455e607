"""Credentials on long-lived connections: checked again for every operation, and at expiry.

An HTTP request is authenticated once and ends; a WebSocket or a streamed (SSE, multipart)
subscription can outlive the token that opened it. So:
- each operation a WebSocket carries (a `subscribe` of graphql-transport-ws, a `start` of
  graphql-ws) first checks the connection's credential again: not expired, and still accepted by
  the authenticator as it is now (the token map, the issuer's JWKS: a key the issuer withdrew no
  longer verifies). If it fails the socket is closed with 4401, and nothing runs;
- a WebSocket whose identity expires is closed with 4401 at that moment, busy or idle, which
  ends every subscription it carries;
- a streamed subscription ends at expiry with one UNAUTHENTICATED error event, then completes.

4401 is graphql-transport-ws's "Unauthorized"; graphql-ws has no code of its own for it, and
both are served here with the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import GraphQLError
from strawberry.types import ExecutionResult

from resolvers.identity import Identity
from resolvers.live_context import LiveContext
from server.auth import CredentialExpired
from server.floor import IdentityRefused

CLOSE_UNAUTHENTICATED = 4401
EXPIRED = "the credentials of this connection have expired"
REVOKED = "the credentials of this connection are no longer accepted"

Identify = Callable[[str], Awaitable[Identity | None]]
Clock = Callable[[], float]


@dataclass
class ConnectionContext(LiveContext):
    """The context of one WebSocket: besides who it is, where it came from (failed
    authentications count per address) and the `Authorization` value that proved it, which each
    operation presents again."""

    address: str = ""
    authorization: str | None = None


class Closable(Protocol):
    async def close(self, code: int, reason: str) -> None: ...


class CredentialCheck:
    """Whether a connection's credential still proves its identity, now."""

    def __init__(self, identify: Identify, clock: Clock = time.time) -> None:
        self._identify = identify
        self.clock = clock

    async def refusal(self, context: Any) -> str | None:
        """None while the credential holds; else why it does not (a reason fit for a client)."""
        identity: Identity = context.identity
        if not identity.authenticated:
            return None  # anonymous: there is nothing to expire or revoke
        if identity.expired(self.clock()):
            return EXPIRED
        authorization = getattr(context, "authorization", None)
        if authorization is None:
            return REVOKED  # nothing to check it with: fail closed
        try:
            again = await self._identify(authorization)
        except CredentialExpired:
            return EXPIRED
        except IdentityRefused:
            return REVOKED
        if again is None:
            return EXPIRED if identity.expires_at is not None else REVOKED
        if again.cache_key != identity.cache_key:
            return REVOKED  # the same token now names someone else: not this connection's
        return None


async def close_at_expiry(identity: Identity, websocket: Closable, clock: Clock) -> None:
    """Sleep until `identity` expires, then close `websocket` with 4401 (never, if it does not
    expire). Run as a task the connection cancels when it ends first."""
    if identity.expires_at is None:
        return
    await asyncio.sleep(max(0.0, identity.expires_at - clock()))
    with contextlib.suppress(RuntimeError):  # the client closed it meanwhile
        await websocket.close(CLOSE_UNAUTHENTICATED, EXPIRED)


def expired_result() -> ExecutionResult:
    error = GraphQLError(EXPIRED, extensions={"code": "UNAUTHENTICATED"})
    return ExecutionResult(data=None, errors=[error])


async def until_expiry(
    results: Any, expires_at: float, clock: Clock = time.time
) -> AsyncGenerator[Any, None]:
    """The events of a subscription until `expires_at`; then one UNAUTHENTICATED error, and
    the subscription is stopped (its generator closed, so it leaves its poller)."""
    iterator = aiter(results)
    try:
        while True:
            remaining = expires_at - clock()
            if remaining <= 0:
                yield expired_result()
                return
            try:
                value = await asyncio.wait_for(anext(iterator), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield expired_result()
                return
            yield value
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


__all__ = [
    "CLOSE_UNAUTHENTICATED",
    "ConnectionContext",
    "CredentialCheck",
    "close_at_expiry",
    "expired_result",
    "until_expiry",
]
