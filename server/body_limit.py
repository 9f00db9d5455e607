"""A cap on request body size, enforced as bytes arrive so nothing past the cap is buffered.

A declared Content-Length over the cap is refused before the app runs; a chunked body (no
length) is counted as it streams, and the app sees a disconnect once it passes the cap, so it
stops reading and the middleware answers 413 in its place.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


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


class BodyLimitMiddleware:
    """Answers 413 (REQUEST_TOO_LARGE) to an HTTP request whose body exceeds `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
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
            await too_large(self.max_bytes)(scope, receive, send)
