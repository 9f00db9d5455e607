"""Guessing tokens is not free: past SLURM_GRAPHQL_AUTH_FAILURES_PER_MINUTE failed
authentications an address is refused (429 over HTTP, SSE and Lambda events; WebSocket closed
with 4429), even with a correct token, for the rest of the minute; other addresses are not; a
failure is logged with the address, never with the token. Real uvicorn and websockets; the
Lambda handler with API Gateway (REST, HTTP API) and ALB events."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from server.app import create_app
from server.lambda_app import make_handler
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.lambda_events import KINDS, LambdaRuntime, graphql_post, response_headers
from tests.support.oidc import oidc_issuer
from tests.support.server import REPO, running_server
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, serving

pytestmark = pytest.mark.cluster

VIEWER = "{ viewer { user } }"
LIMIT = 10  # the default
GUESSES = [f"guess-{n:04d}-not-a-token" for n in range(15)]
# A stream subscription that needs no cluster answer to be refused.
NODE_EVENTS = "subscription { nodeEvents { kind } }"


def settings() -> Settings:
    return Settings(tokens=parse_token_map(TOKENS), poll_interval=60)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_from(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


async def test_http_guesses_are_blocked_after_the_limit(
    unix_users: None, caplog: pytest.LogCaptureFixture
) -> None:
    """15 bad tokens from one address: 10 x 401, then 429 with Retry-After; then alice's
    correct token and her SSE stream get 429 too; bob from another address gets in; the log
    names the address and holds no guessed token."""
    caplog.set_level(logging.WARNING, logger="slurm_graphql")
    app = create_app(settings())
    async with app.router.lifespan_context(app), client_from(app, "198.51.100.9") as client:
        codes = [
            (
                await client.post("/graphql", json={"query": VIEWER}, headers=bearer(guess))
            ).status_code
            for guess in GUESSES
        ]
        correct = await client.post(
            "/graphql", json={"query": VIEWER}, headers=bearer("alice-token")
        )
        stream = await client.post(
            "/graphql",
            json={"query": NODE_EVENTS},
            headers={**bearer("alice-token"), "Accept": "text/event-stream"},
        )
        async with client_from(app, "198.51.100.10") as elsewhere:
            other = await elsewhere.post(
                "/graphql", json={"query": VIEWER}, headers=bearer("bob-token")
            )
    assert codes == [401] * LIMIT + [429] * (len(GUESSES) - LIMIT)
    for refused in (correct, stream):
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert other.status_code == 200 and other.json()["data"]["viewer"]["user"] == "bob"
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == LIMIT and all("198.51.100.9" in line for line in failures)
    assert not any(guess in caplog.text for guess in GUESSES)


async def _attempt(url: str, protocol: str, token: str, where: str, **connect: Any) -> Any:
    """One WebSocket with `token` in the upgrade header or in connection_init: "ack", or the
    code it was closed with."""
    headers = bearer(token) if where == "header" else {}
    payload = bearer(token) if where == "init" else {}
    async with websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
        **connect,
    ) as socket:
        try:
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 10))
                if message["type"] == "connection_ack":
                    return "ack"
        except websockets.ConnectionClosed:
            return socket.close_code


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_websocket_guesses_are_blocked_after_the_limit(
    protocol: str, unix_users: None
) -> None:
    """10 sockets with bad tokens (upgrade header or connection_init) are refused one by one;
    the 11th, with alice's correct token, is closed with 4429; from another address it opens."""
    refused = 4403 if protocol == TRANSPORT_WS else 1011
    async with serving(create_app(settings())) as url:
        seen = [
            await _attempt(url, protocol, guess, "init" if n % 2 else "header")
            for n, guess in enumerate(GUESSES[:LIMIT])
        ]
        blocked = [
            await _attempt(url, protocol, "alice-token", where) for where in ("init", "header")
        ]
        elsewhere = await _attempt(
            url, protocol, "alice-token", "init", local_addr=("127.0.0.2", 0)
        )
    assert seen == [refused] * LIMIT
    assert blocked == [4429, 4429]
    assert elsewhere == "ack"


def _from(event: dict[str, Any], address: str) -> dict[str, Any]:
    """`event` as if it came from `address` (API Gateway's sourceIp; an ALB's X-Forwarded-For)."""
    context = event["requestContext"]
    for source in (context.get("identity"), context.get("http")):
        if isinstance(source, dict):
            source["sourceIp"] = address
    for name in ("headers", "multiValueHeaders"):
        headers = event.get(name) or {}
        for key in list(headers):
            if key.lower() == "x-forwarded-for":
                headers[key] = [address] if name == "multiValueHeaders" else address
    return event


@pytest.fixture
def runtime(unix_users: None) -> Iterator[LambdaRuntime]:
    handler = LambdaRuntime(lambda: make_handler(settings()))
    try:
        yield handler
    finally:
        handler.close()


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_guesses_are_blocked_after_the_limit(kind: str, runtime: LambdaRuntime) -> None:
    """Within one execution environment, as over HTTP: 10 x 401, then 429 even for alice's
    correct token; another source address gets in."""

    def post(token: str, address: str) -> dict[str, Any]:
        event = graphql_post(kind, VIEWER, headers=bearer(token))
        return runtime.invoke(_from(event, address))

    codes = [post(guess, "203.0.113.7")["statusCode"] for guess in GUESSES]
    correct = post("alice-token", "203.0.113.7")
    other = post("bob-token", "203.0.113.8")
    assert codes == [401] * LIMIT + [429] * (len(GUESSES) - LIMIT)
    assert correct["statusCode"] == 429 and int(response_headers(correct)["retry-after"]) >= 1
    assert other["statusCode"] == 200


def test_behind_an_alb_a_guesser_cannot_choose_its_address(runtime: LambdaRuntime) -> None:
    """An ALB appends the address it saw to X-Forwarded-For; what the client put before it is
    its own invention. Guesses each claiming another first hop are still one address's."""

    def post(token: str, forwarded: str) -> int:
        event = graphql_post("alb", VIEWER, headers=bearer(token))
        event["headers"]["x-forwarded-for"] = forwarded
        return int(runtime.invoke(event)["statusCode"])

    codes = [post(guess, f"192.0.2.{n}, 203.0.113.7") for n, guess in enumerate(GUESSES)]
    assert codes == [401] * LIMIT + [429] * (len(GUESSES) - LIMIT)
    assert post("bob-token", "203.0.113.7, 203.0.113.8") == 200


def test_behind_the_images_proxy_setting_a_guesser_cannot_choose_its_address(
    unix_users: None,
) -> None:
    """`serve` with the image's FORWARDED_ALLOW_IPS, this test acting as the ALB on loopback:
    each guess claims another first X-Forwarded-For hop before the address the ALB appended
    (198.51.100.7); they are still one address's guesses, blocked after the limit."""
    trusted = re.search(r"FORWARDED_ALLOW_IPS=(\S+)", (REPO / "Dockerfile").read_text())
    assert trusted is not None
    environ = {"SLURM_GRAPHQL_TOKENS": TOKENS, "FORWARDED_ALLOW_IPS": trusted.group(1)}
    with running_server(environ) as url, httpx.Client(base_url=url, trust_env=False) as client:

        def post(token: str, forwarded: str) -> int:
            headers = {**bearer(token), "X-Forwarded-For": forwarded}
            return client.post("/graphql", json={"query": VIEWER}, headers=headers).status_code

        codes = [post(guess, f"192.0.2.{n}, 198.51.100.7") for n, guess in enumerate(GUESSES)]
        other = post("bob-token", "198.51.100.8")
    assert codes == [401] * LIMIT + [429] * (len(GUESSES) - LIMIT)
    assert other == 200


async def test_a_genuine_expired_token_is_not_a_guess(unix_users: None) -> None:
    """JWTs the issuer signed that have expired get 401 but do not count (a client whose token
    lapsed is not locked out when it comes back with a fresh one); forged ones do."""
    with oidc_issuer() as issuer:
        app = create_app(Settings.from_environ(issuer.environ()))
        stale = [
            issuer.token(username="alice", exp=int(time.time()) - 60, jti=str(n))
            for n in range(len(GUESSES))
        ]
        forged = [token[:-4] + "AAAA" for token in stale]
        async with app.router.lifespan_context(app), client_from(app, "198.51.100.9") as client:

            async def post(token: str) -> int:
                reply = await client.post("/graphql", json={"query": VIEWER}, headers=bearer(token))
                return reply.status_code

            expired = [await post(token) for token in stale]
            fresh = await post(issuer.token(username="alice"))
            guessed = [await post(token) for token in forged]
    assert expired == [401] * len(stale)
    assert fresh == 200
    assert guessed == [401] * LIMIT + [429] * (len(forged) - LIMIT)
