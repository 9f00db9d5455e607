"""Where a request came from: the key of per-address limits (failed authentications, and the
rate and connection limits of clients nobody knows yet).

Over `serve` it is the peer uvicorn reports, which behind a proxy is what
`--forwarded-allow-ips` lets it read from X-Forwarded-For (see README, Security). Under Lambda,
Mangum takes API Gateway's `sourceIp`, which AWS sets; but for an ALB event it passes the whole
X-Forwarded-For header, whose leading entries the client writes itself, so a guesser could be a
new address at every request. An ALB appends the address it saw to that header: the last entry
is the one to trust.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import Scope


def client_address(scope: Scope) -> str:
    if _from_alb(scope):
        forwarded = ",".join(Headers(scope=scope).getlist("x-forwarded-for"))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        return hops[-1] if hops else ""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _from_alb(scope: Scope) -> bool:
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    return isinstance(context, Mapping) and "elb" in context


__all__ = ["client_address"]
