"""Who may read `/metrics`: anyone who reaches it (the default), holders of a token
(SLURM_GRAPHQL_METRICS_TOKEN, sent as `Authorization: Bearer <token>`), and/or only those who
reach a port of its own (SLURM_GRAPHQL_METRICS_PORT, which `serve` listens on beside the API's,
on SLURM_GRAPHQL_METRICS_HOST, loopback by default): the API's port then has no `/metrics`.

Metrics say which operations run, how often and how long, and which clusters fail: useful to
someone mapping the service, so a deployment that exposes the API keeps them apart.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.tokens import bearer_token

Endpoint = Callable[[Request], Awaitable[Response]]


def token_required(endpoint: Endpoint, token: str | None) -> Endpoint:
    """`endpoint`, answering 401 to a request without `token` (unchanged when it is None)."""
    if token is None:
        return endpoint
    expected = token.encode()

    async def guarded(request: Request) -> Response:
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None or not hmac.compare_digest(presented.encode(), expected):
            body = {
                "errors": [
                    {
                        "message": "metrics need Authorization: Bearer <metrics token>",
                        "extensions": {"code": "UNAUTHENTICATED"},
                    }
                ]
            }
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await endpoint(request)

    return guarded


def by_port(api: ASGIApp, metrics: ASGIApp, metrics_port: int) -> ASGIApp:
    """One ASGI app for a server listening on two sockets: requests that arrived on
    `metrics_port` go to `metrics`, everything else (the lifespan too) to `api`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server is not None and server[1] == metrics_port:
            await metrics(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app


__all__ = ["by_port", "token_required"]
