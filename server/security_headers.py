"""Headers that tell browsers how little any response of ours may do.

Every HTTP response gets them unless it set its own (GraphiQL's page sets its own
Content-Security-Policy, server/graphiql.py), refusals and errors included:
- `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; …`: a JSON answer, or
  any page but GraphiQL's, opened as a document loads and runs nothing, and no site frames it;
- `X-Frame-Options: DENY`: the same for browsers older than `frame-ancestors` (clickjacking);
- `X-Content-Type-Options: nosniff`: JSON and text are never run as script or style, whatever
  a page that includes them hopes;
- `Referrer-Policy: no-referrer`: a GraphiQL URL's `?query=` never leaks to another site.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", DEFAULT_CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


class SecurityHeadersMiddleware:
    """ASGI middleware: adds SECURITY_HEADERS to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
