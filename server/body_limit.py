"""A cap on request body size, enforced as bytes arrive so nothing past the cap is buffered,
and on the time the body takes to arrive.

A declared Content-Length over the cap is refused before the app runs; a chunked body (no
length) is counted as it streams, and the app sees a disconnect once it passes the cap, so it
stops reading and the middleware answers 413 in its place.

A body not complete within `read_timeout` seconds of the app's first read (a client that
sends a byte now and then, holding its connection and a task) is cut off the same way, and
answered 408 with `Connection: close`. The deadline is for the whole body, not for each chunk:
a chunk a second would reset a per-chunk timer for ever. Once the body is complete, the app's
reads (which wait for the client to go away during a streamed answer) have no deadline.
"""

from __future__ import annotations

import asyncio
import re

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# ASCII digits only, and few enough for int(): a declared length is read, never trusted.
_DECIMAL = re.compile(r"[0-9]{1,20}")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_READ_TIMEOUT = 30.0


def too_large(limit: int) -> JSONResponse:
    body = {
        "errors": [
            {
                "message": f"request body exceeds {limit} bytes",
                "extensions": {"code": "REQUEST_TOO_LARGE"},
            }
        ]
    }
    return JSONResponse(body, status_code=413)


def too_slow(seconds: float) -> JSONResponse:
    body = {
        "errors": [
            {
                "message": f"request body not received within {seconds:g} s",
                "extensions": {"code": "REQUEST_TIMEOUT"},
            }
        ]
    }
    return JSONResponse(body, status_code=408, headers={"Connection": "close"})


class BodyLimitMiddleware:
    """Answers 413 (REQUEST_TOO_LARGE) to an HTTP request whose body exceeds `max_bytes`, and
    408 (REQUEST_TIMEOUT) to one whose body takes longer than `read_timeout` seconds."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and _DECIMAL.fullmatch(declared) and int(declared) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0
        exceeded = False  # too large or too slow: answered here, not by the app
        timed_out = False
        complete = False
        started = False
        deadline: float | None = None

        async def counting_receive() -> Message:
            nonlocal received, exceeded, timed_out, complete, deadline
            if exceeded:
                return {"type": "http.disconnect"}
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.read_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                exceeded = timed_out = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    # The app must not see these bytes; to it the client went away.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the 413 below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except ClientDisconnect:
            # Starlette raises this on the disconnect fed to the app above.
            if not exceeded:
                raise
        if exceeded and not started:
            answer = too_slow(self.read_timeout) if timed_out else too_large(self.max_bytes)
            await answer(scope, receive, send)
