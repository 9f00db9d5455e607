"""Authentication and the per-identity limits as middleware (server/authentication.py,
server/channel_limits.py), around an app that only says who it served: what reaches the app is
decided before it runs, and the limits spend each identity's own bucket."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.auth import TokenAuthenticator
from server.auth_failures import AuthFailures
from server.authentication import Authentication, AuthenticationMiddleware
from server.channel_limits import ChannelLimitMiddleware, ChannelLimits
from server.rate_limit import RateLimiter
from server.tokens import parse_token_map

TOKENS = "alice-token-1234=alice,bob-token-12345=bob,root-token-12345=root"


def _app(served: list[str | None], *, rate: float = 100.0) -> Starlette:
    async def endpoint(request: Request) -> Response:
        identity = request.scope.get("state", {}).get("identity")
        served.append(identity.user if identity is not None else None)
        return JSONResponse({"ok": True})

    authentication = Authentication(
        TokenAuthenticator(parse_token_map(TOKENS)), min_uid=1000, failures=AuthFailures(3)
    )
    limits = ChannelLimits(RateLimiter(rate, 2), max_streams=4, max_sockets=4)
    middleware = [
        Middleware(AuthenticationMiddleware, authentication=authentication),
        Middleware(ChannelLimitMiddleware, limits=limits),
    ]
    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"], middleware=middleware)])


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_authenticated_requests_reach_the_app_with_their_identity() -> None:
    served: list[str | None] = []
    async with _client(_app(served)) as client:
        assert (await client.post("/")).status_code == 401
        assert (await client.post("/", headers=_bearer("not-a-token-at-all"))).status_code == 401
        ok = await client.post("/", headers=_bearer("alice-token-1234"))
        # GraphiQL's page runs nothing: it reaches the app, anonymous.
        page = await client.get("/", headers={"Accept": "text/html"})
    assert ok.status_code == 200
    assert page.status_code == 200
    assert served == ["alice", None]


async def test_an_identity_below_the_floor_is_refused_before_the_app() -> None:
    served: list[str | None] = []
    async with _client(_app(served)) as client:
        response = await client.post("/", headers=_bearer("root-token-12345"))
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    assert served == []


async def test_an_address_guessing_tokens_is_blocked_even_with_a_valid_one() -> None:
    """The block is decided before the credential is looked at: a guesser that finally hits
    a valid token learns nothing from it until the window ends."""
    served: list[str | None] = []
    async with _client(_app(served)) as client:
        for n in range(3):
            await client.post("/", headers=_bearer(f"guess-number-{n}"))
        blocked = await client.post("/", headers=_bearer("alice-token-1234"))
    assert blocked.status_code == 429
    assert served == []


@pytest.mark.parametrize("attacker", ["bob-token-12345", None])
async def test_each_identity_spends_its_own_bucket(attacker: str | None) -> None:
    """bob (or an unauthenticated client, which never reaches the limiter) using up its
    burst does not stop alice: the limit runs after authentication, keyed by identity."""
    served: list[str | None] = []
    async with _client(_app(served, rate=0.01)) as client:
        headers = _bearer(attacker) if attacker else {}
        answers = [(await client.post("/", headers=headers)).status_code for _ in range(4)]
        alice = await client.post("/", headers=_bearer("alice-token-1234"))
    assert answers == ([200, 200, 429, 429] if attacker else [401] * 4)
    assert alice.status_code == 200
    assert served[-1] == "alice"
