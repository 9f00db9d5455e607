"""Limits that hold on every channel: one rate limit, one subscription count and one WebSocket
connection count per client, whatever way its operations arrive.

A client is its authenticated identity, else its address (`client_key`). Its operations are:
- an HTTP request to /graphql (POST or GET, and a subscription streamed over SSE or multipart,
  which is one HTTP request for the stream's whole life; each Lambda event is one);
- each `subscribe` (graphql-transport-ws) or `start` (graphql-ws) message on a WebSocket
  (server/ws_limits.py), where the socket stays open for the client's other operations.
Each spends one token of the client's bucket (server/rate_limit.py). Streams in flight (WebSocket
operations, SSE and multipart subscriptions) are counted per client across all its connections,
up to `max_streams`; WebSocket connections too, up to `max_sockets` per address before
authentication and per identity after it. A slot is released when what holds it ends, however
it ends.

The counts live in the app (one per process): several replicas each count their own, so a
deployment with N replicas allows N times each figure (see README, Security).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.client_address import client_address
from server.rate_limit import RateLimiter, rate_limited
from server.shared_limits import SharedRateLimit, StreamSlots
from server.slots import Slots

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Accept types with which strawberry streams a subscription over HTTP.
STREAM_TYPES = ("text/event-stream", "multipart/mixed")
# graphql-transport-ws reserves 4400-4499 for the server; 4429 is its "too many requests".
CLOSE_TOO_MANY = 4429


def client_key(identity_key: str | None, scope: Scope) -> str:
    """The authenticated identity's key when there is one, else the client's address."""
    if identity_key is not None:
        return f"identity:{identity_key}"
    return f"address:{client_address(scope)}"


def rate_limited_error(wait: float) -> dict[str, Any]:
    """The GraphQL error of an operation refused by the rate limit (WebSocket messages)."""
    seconds = max(1, math.ceil(wait))
    return {
        "message": f"rate limit exceeded: retry in {seconds} s",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    }


def too_many_streams_error(limit: int, per: str = "user") -> dict[str, Any]:
    return {
        "message": f"subscription limit reached: at most {limit} at once per {per}",
        "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
    }


def is_stream_request(scope: Scope) -> bool:
    """An HTTP request asking for a streamed (SSE or multipart) answer. Media types are
    case-insensitive, and strawberry streams for `Text/Event-Stream` too: so must the count."""
    accept = Headers(scope=scope).get("accept", "").lower()
    return any(kind in accept for kind in STREAM_TYPES)


@dataclass
class ChannelLimits:
    rate: RateLimiter | None
    max_streams: int
    max_sockets: int
    streams: StreamSlots = field(init=False)
    sockets: Slots = field(init=False)
    # With SLURM_GRAPHQL_REDIS_URL, while the app's lifespan runs: the rate limit shared by
    # every replica (server/shared_limits.py); `rate` is then only the fallback.
    shared_rate: SharedRateLimit | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.streams = StreamSlots(Slots(self.max_streams))
        self.sockets = Slots(self.max_sockets)

    async def take(self, key: str) -> float:
        """Spend one of `key`'s tokens: 0 when allowed, else seconds until one is back."""
        if self.rate is None:
            return 0.0
        if self.shared_rate is not None:
            wait = await self.shared_rate.take(key)
            if wait is not None:
                return wait
        return self.rate.take(key)

    async def serve(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Run `app` for an authenticated scope (`state.identity` set when there is one)."""
        if scope["type"] == "http":
            await self._serve_http(scope, receive, send, app)
        elif scope["type"] == "websocket":
            await self._serve_websocket(scope, receive, send, app)
        else:
            await app(scope, receive, send)

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        key = client_key(_identity_key(scope), scope)
        wait = await self.take(key)
        if wait > 0:
            await rate_limited(wait)(scope, receive, send)
            return
        if not is_stream_request(scope):
            await app(scope, receive, send)
            return
        if not await self.streams.acquire(key):
            body = {"errors": [too_many_streams_error(self.max_streams)]}
            await JSONResponse(body, status_code=429)(scope, receive, send)
            return
        try:
            # The stream's response is sent inside this call: the slot is held while it lasts.
            await app(scope, receive, send)
        finally:
            self.streams.release(key)

    async def _serve_websocket(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp
    ) -> None:
        """Connections per address, counted before anything else happens on them; once the
        identity is known, server/ws_limits.py counts it too."""
        key = client_key(None, scope)
        if not self.sockets.acquire(key):
            websocket = WebSocket(scope, receive, send)
            offered = scope.get("subprotocols") or []
            await websocket.accept(subprotocol=offered[0] if offered else None)
            await websocket.close(CLOSE_TOO_MANY, "too many connections")
            return
        try:
            await app(scope, receive, send)
        finally:
            self.sockets.release(key)


class ChannelLimitMiddleware:
    """Spends each request's (or WebSocket's) share of `limits`: after authentication, so each
    identity spends its own bucket, and an address its own when there is no identity yet."""

    def __init__(self, app: ASGIApp, limits: ChannelLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.limits.serve(scope, receive, send, self.app)


def _identity_key(scope: Scope) -> str | None:
    identity = scope.get("state", {}).get("identity")
    return None if identity is None else str(identity.cache_key)


__all__ = [
    "CLOSE_TOO_MANY",
    "ChannelLimitMiddleware",
    "ChannelLimits",
    "client_key",
    "is_stream_request",
    "rate_limited_error",
    "too_many_streams_error",
]
