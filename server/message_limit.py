"""Caps on what arrives outside a request body: WebSocket messages and GET query strings.

The body cap (server/body_limit.py) bounds an HTTP request; it does not see a WebSocket, whose
server accepts messages of up to 16 MiB by default, nor a query string. Here:

- a WebSocket message over `max_message_bytes` closes the socket with 1009 (message too big),
  before anything decodes it. `serve` also tells uvicorn the same cap (`ws_max_size`), so such a
  frame is refused as it arrives instead of being buffered whole; this middleware holds the cap
  under any other server.
- a WebSocket message that is not JSON (or nests too deeply to decode) closes the socket with
  4400 on both protocols; graphql-ws (legacy) would otherwise skip it silently.
- a query string longer than `max_query_bytes` is answered 414 (`URI_TOO_LONG`) before it is
  decoded.
"""

from __future__ import annotations

import json

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slurm_graphql.errors import SlurmGraphQLError

CLOSE_TOO_BIG = 1009
CLOSE_MALFORMED = 4400


class MalformedMessage(SlurmGraphQLError):
    """A WebSocket message that is not a JSON value this server can decode."""


def decode_message(data: str | bytes) -> object:
    """A WebSocket message's JSON; MalformedMessage for anything else, never a server fault."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedMessage(type(exc).__name__) from None


def uri_too_long(limit: int) -> JSONResponse:
    body = {
        "errors": [
            {
                "message": f"the query string exceeds {limit} bytes; send the document in a POST",
                "extensions": {"code": "URI_TOO_LONG"},
            }
        ]
    }
    return JSONResponse(body, status_code=414)


class MessageLimitMiddleware:
    """Closes a WebSocket (1009) on a message over `max_message_bytes`; answers 414 to an HTTP
    request whose query string is over `max_query_bytes`."""

    def __init__(self, app: ASGIApp, max_message_bytes: int, max_query_bytes: int) -> None:
        self.app = app
        self.max_message_bytes = max_message_bytes
        self.max_query_bytes = max_query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(scope.get("query_string", b"")) > self.max_query_bytes:
                await uri_too_long(self.max_query_bytes)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        closed = False

        async def capped_receive() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            message = await receive()
            if message["type"] == "websocket.receive" and too_big(message, self.max_message_bytes):
                closed = True
                await send(
                    {"type": "websocket.close", "code": CLOSE_TOO_BIG, "reason": "message too big"}
                )
                # To the app the client went away; the message is dropped unread.
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, capped_receive, guarded_send)


def too_big(message: Message, limit: int) -> bool:
    """Whether a WebSocket message holds more than `limit` bytes."""
    text = message.get("text")
    if text is not None:
        # A code point is 1-4 bytes in UTF-8: encode only a text short enough for it to matter.
        if len(text) > limit:
            return True
        return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit
    data = message.get("bytes")
    return data is not None and len(data) > limit
