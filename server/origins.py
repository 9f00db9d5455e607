"""The Origin check behind cross-site request forgery and WebSocket hijacking.

A browser lets any page send a POST to any address, and open a WebSocket to any address,
with the page's origin in `Origin`. Without authentication, whoever reaches the server is
trusted, so a page on `https://evil.example` must not act through a developer's browser on
a loopback server. WebSockets are always checked: CORS does not apply to them.

An origin is allowed when its host is one this server answers to (server/hosts.py: loopback
names in anonymous mode, any port, and SLURM_GRAPHQL_ALLOWED_HOSTS), or when it is listed
(SLURM_GRAPHQL_CORS_ORIGINS for HTTP; SLURM_GRAPHQL_WS_ORIGINS, by default the CORS list, for
WebSockets). It is never compared with the request's own `Host`: under DNS rebinding the
attacker's name is in both. So with authentication and no SLURM_GRAPHQL_ALLOWED_HOSTS, a
browser's WebSocket (GraphiQL's subscriptions too) is refused unless its origin is listed.

A request without `Origin` is no browser's (browsers send it on every POST and upgrade),
unless `Sec-Fetch-Site` says cross-site. `Origin: null` (sandboxed frames, `file:`) is refused.
Without authentication a GET is checked too when the browser says it comes from another site
and is not a navigation (an image or script tag that would run a query).
Refusals are 403 `ORIGIN_NOT_ALLOWED`, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.http.websocket_origin import normalize_allowed_origins, normalize_origin

from server.hosts import canonical_host, host_allowed, refuse

if TYPE_CHECKING:
    from server.settings import Settings

ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
# Methods browsers send without side effects by contract (and strawberry runs no mutation
# over GET); every other method is checked.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class OriginPolicy:
    allowed_hosts: tuple[str, ...]
    loopback: bool  # anonymous mode: loopback names are this server's own
    http_origins: frozenset[str]  # normalised; "*" for any
    ws_origins: frozenset[str]
    check_http: bool  # no authentication: a POST's only credential is being able to reach us

    @classmethod
    def of(cls, settings: Settings) -> OriginPolicy:
        anonymous = settings.auth_mode == "none"
        cors = settings.cors_origins
        return cls(
            allowed_hosts=settings.allowed_hosts,
            loopback=anonymous,
            http_origins=normalize_allowed_origins(cors),
            ws_origins=normalize_allowed_origins(
                cors if settings.ws_origins is None else settings.ws_origins
            ),
            check_http=anonymous,
        )

    @property
    def own_pages_open_websockets(self) -> bool:
        """Whether a page this server served (GraphiQL) may open a WebSocket to it (with origins
        listed, the operator has said which pages may: we do not know our own origin)."""
        return self.loopback or bool(self.allowed_hosts) or bool(self.ws_origins)

    def allows(self, origin: str | None, fetch_site: str | None, listed: frozenset[str]) -> bool:
        """May a request from `origin` (its `Sec-Fetch-Site`) act, given the `listed` origins?"""
        if origin is None:
            return fetch_site != "cross-site"
        if "*" in listed:
            return True
        normalised = normalize_origin(origin)
        if normalised is None:
            return False  # "null", or not an origin at all
        if normalised in listed:
            return True
        parts = urlsplit(normalised)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False
        return host_allowed(canonical_host(parts.hostname), self.allowed_hosts, self.loopback)

    def checks(self, scope: Scope) -> frozenset[str] | None:
        """The listed origins `scope` is held to; None when it is not checked."""
        if scope["type"] == "websocket":
            return self.ws_origins
        if scope["type"] != "http" or not self.check_http:
            return None
        if scope["method"] not in _SAFE_METHODS:
            return self.http_origins
        # A GET runs a query too: another site's <img src="…/graphql?query=…"> would spend the
        # cluster's time in every visitor's browser. Following a link (a navigation) is fine:
        # it shows GraphiQL, which runs nothing until its user does.
        fetch = Headers(scope=scope)
        if (
            fetch.get("sec-fetch-site") == "cross-site"
            and fetch.get("sec-fetch-mode") != "navigate"
        ):
            return self.http_origins
        return None


class OriginPolicyMiddleware:
    """ASGI middleware: a checked request from an origin not allowed gets 403."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listed = self.policy.checks(scope)
        if listed is not None:
            headers = Headers(scope=scope)
            if not self.policy.allows(headers.get("origin"), headers.get("sec-fetch-site"), listed):
                error = {
                    "message": "pages on this origin may not use this server",
                    "extensions": {"code": ORIGIN_NOT_ALLOWED},
                }
                await refuse(
                    JSONResponse({"errors": [error]}, status_code=403), scope, receive, send
                )
                return
        await self.app(scope, receive, send)
