"""The Host header check that defeats DNS rebinding.

A server on loopback with no authentication trusts whoever can reach loopback. A web page on
`http://r.example:8000` whose name is re-pointed at 127.0.0.1 can make the browser send
requests there, same-origin, with `Host: r.example:8000`. So in anonymous mode only loopback
names are accepted (`localhost`, 127.0.0.0/8, `[::1]`, any port), plus SLURM_GRAPHQL_ALLOWED_HOSTS;
names are compared in one canonical form: lower case, no trailing dot (`localhost.` is
`localhost`), IP addresses as Python spells them, an IPv4-mapped IPv6 address as its IPv4
address (Python 3.13 calls `::ffff:127.0.0.1` loopback, 3.11 does not: we decide, not it);
with authentication the check applies only when that list is set. Other hosts get 421 on HTTP
and on WebSocket upgrades alike, before anything runs.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")
_HOST = re.compile(r"[a-z0-9_.-]+\Z")  # what a name in a Host header may hold (`_`: Docker)
# Load balancer and orchestrator probes address the task by IP: health stays reachable.
_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses (no port; `*.example.org` for subdomains)."""
    hosts = []
    for item in (part.strip().lower() for part in value.split(",")):
        if not item:
            continue
        host = canonical_host(item.strip("[]"))
        if host is None or not (_NAME.match(host) or _ip(host) is not None):
            raise ValueError(f"{item[:60]!r} is not a host name or IP address (no port)")
        hosts.append(host)
    return tuple(hosts)


def canonical_host(host: str) -> str | None:
    """`host` (no port, no brackets) as every check compares it; None if empty."""
    host = host.strip().lower()
    if host.endswith("."):
        host = host[:-1]  # the root label: the same name, and browsers send it as typed
    if not host or host.endswith("."):
        return None
    address = _ip(host)
    if address is None:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def host_name(header: str) -> str | None:
    """The host of a `Host` header, without its port and lower-cased; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        inside, bracket, port = header[1:].partition("]")
        if not bracket or (port and not re.fullmatch(r":[0-9]{1,5}", port)):
            return None
        return canonical_host(inside) if _ip(inside) is not None else None
    host, colon, port = header.partition(":")
    if (colon and not re.fullmatch(r"[0-9]{1,5}", port)) or not _HOST.match(host):
        return None
    return canonical_host(host)


def is_loopback_name(host: str) -> bool:
    host = canonical_host(host) or ""
    if host == "localhost":
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def host_allowed(host: str | None, allowed: tuple[str, ...], loopback: bool) -> bool:
    if host is None:
        return False
    if loopback and is_loopback_name(host):
        return True
    return any(
        host.endswith(entry[1:]) if entry.startswith("*.") else host == entry for entry in allowed
    )


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class HostCheckMiddleware:
    """ASGI middleware: HTTP requests and WebSocket upgrades whose Host is not allowed get 421."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...], loopback: bool) -> None:
        self.app = app
        self.allowed = allowed
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in _EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        host = host_name(Headers(scope=scope).get("host", ""))
        if host_allowed(host, self.allowed, self.loopback):
            await self.app(scope, receive, send)
            return
        error = {
            "message": "this server does not answer to that Host name",
            "extensions": {"code": "HOST_NOT_ALLOWED"},
        }
        await refuse(JSONResponse({"errors": [error]}, status_code=421), scope, receive, send)


async def refuse(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """`response` to an HTTP request, or as the answer to a WebSocket upgrade (the ASGI
    denial-response extension); a server without that extension refuses the upgrade (403)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})
        return
    await response(scope, receive, send)
