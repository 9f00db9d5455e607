"""Who a /graphql request is, decided before anything else reads it: the middleware that
authenticates each HTTP request and WebSocket upgrade, and the one object that knows how.

`Authentication` holds the configured authenticator (server/auth.py), the identity floor
(server/floor.py) and the count of failed guesses per address (server/auth_failures.py). The
middleware uses it for every request and upgrade; the GraphQL app uses the same object for what
only it can see: a WebSocket's `connection_init` payload, and each operation's recheck of its
connection's credential (server/credentials.py).

The middleware runs in this order, each step before the next may look at anything:
1. an address blocked for failed authentications gets 429 (a WebSocket is closed with 4429),
   before its credential is even looked at;
2. a verified identity below the floor gets 403 PERMISSION_DENIED (audited);
3. an HTTP request without a valid credential gets 401, except GraphiQL's page, which runs
   nothing; a WebSocket may still authenticate later, in its `connection_init`;
4. otherwise `state.identity` (and the `Authorization` that proved it) is set for what follows:
   the per-identity limits (server/channel_limits.py), then the app.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from resolvers.audit import audit_refusal
from resolvers.identity import Identity
from server.auth import ApiGatewayAuthenticator, Authenticator, CredentialExpired
from server.auth_failures import AuthFailures, blocked_error, blocked_response
from server.channel_limits import CLOSE_TOO_MANY
from server.client_address import client_address
from server.credentials import CredentialCheck
from server.floor import IdentityRefused, check_floor
from server.hosts import refuse
from server.observe import current_ids
from server.tokens import bearer_token


class Authentication:
    """Proves identities with `authenticator` (None: nobody is asked to, loopback only)."""

    def __init__(
        self, authenticator: Authenticator | None, min_uid: int, failures: AuthFailures
    ) -> None:
        self.authenticator = authenticator
        self.min_uid = min_uid
        self.failures = failures
        self.credential_check = CredentialCheck(self.recheck)

    @property
    def required(self) -> bool:
        return self.authenticator is not None

    async def identify(self, scope: Scope, authorization: str | None) -> Identity | None:
        """The authenticated identity a request proves, None if it proves none; raises
        IdentityRefused for verified claims below the identity floor, whichever authenticator
        vouched for them."""
        if isinstance(self.authenticator, ApiGatewayAuthenticator):
            identity = self.authenticator.identity_for_event(scope.get("aws.event"))
        else:
            token = bearer_token(authorization)
            if token is None or self.authenticator is None:
                return None
            identity = await self.authenticator.identity(token)
        if identity is not None:
            check_floor(identity.user, self.min_uid)
        return identity

    async def authenticate(
        self, scope: Scope, authorization: str | None, channel: str | None = None
    ) -> Identity | None:
        """`identify`, counting a presented credential that proves nothing as a failure of the
        client's address; a genuine but expired token is no guess, and API Gateway's authorizer
        has refused guesses before the event reaches us."""
        try:
            identity = await self.identify(scope, authorization)
        except CredentialExpired:
            return None
        if (
            identity is None
            and authorization
            and not isinstance(self.authenticator, ApiGatewayAuthenticator)
        ):
            self.failures.failed(client_address(scope), channel or scope["type"])
        return identity

    async def recheck(self, authorization: str) -> Identity | None:
        """What a long-lived connection's credential proves now (server/credentials.py)."""
        return await self.identify({}, authorization)


class AuthenticationMiddleware:
    """Authenticates every HTTP request and WebSocket upgrade of the app it wraps."""

    def __init__(self, app: ASGIApp, authentication: Authentication) -> None:
        self.app = app
        self.authentication = authentication

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.authentication.required:
            await self.app(scope, receive, send)
            return
        wait = self.authentication.failures.retry_after(client_address(scope))
        if wait > 0:
            await _refuse_blocked(wait, scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        try:
            identity = await self.authentication.authenticate(scope, authorization)
        except IdentityRefused as refused:
            audit_refusal(current_ids(), refused.claimed, refused.reason, "PERMISSION_DENIED")
            await refuse(_permission_denied(), scope, receive, send)
            return
        if identity is None and scope["type"] == "http" and not is_ide_page(scope):
            await _unauthenticated()(scope, receive, send)
            return
        if identity is not None:
            state = scope.setdefault("state", {})
            state["identity"], state["authorization"] = identity, authorization
        await self.app(scope, receive, send)


def is_ide_page(scope: Scope) -> bool:
    """A browser asking for GraphiQL's page: public, as it runs nothing itself; what the page
    sends to run a query carries the token."""
    accept = Headers(scope=scope).get("accept", "")
    return scope.get("method") == "GET" and "text/html" in accept


def _unauthenticated() -> Response:
    body = {
        "errors": [
            {
                "message": "authentication required: send Authorization: Bearer <token>",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ]
    }
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _permission_denied() -> Response:
    """Verified, but not an identity this service acts as; why is in the audit log only."""
    body = {
        "errors": [
            {
                "message": "this identity may not use this service",
                "extensions": {"code": "PERMISSION_DENIED"},
            }
        ]
    }
    return JSONResponse(body, status_code=403)


async def _refuse_blocked(wait: float, scope: Scope, receive: Receive, send: Send) -> None:
    """An address past its failed authentications: 429, or a WebSocket closed with 4429."""
    if scope["type"] == "http":
        await blocked_response(wait)(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    offered = scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    await websocket.close(CLOSE_TOO_MANY, blocked_error(wait)["message"])


__all__ = ["Authentication", "AuthenticationMiddleware", "is_ide_page"]
