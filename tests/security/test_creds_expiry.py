"""A credential's expiry holds on long-lived connections: a WebSocket (both protocols) is
closed with 4401 when its JWT expires, busy or idle, and runs nothing sent after; a streamed
subscription (SSE, multipart) ends at expiry with an UNAUTHENTICATED error event. Real uvicorn,
real websockets, a real OIDC issuer on loopback, the real cluster behind subscriptions.

HTTP requests and Lambda events are authenticated one by one (tests/server/test_jwt.py refuses
an expired token there); the re-check of each WebSocket operation against the authenticator is
also tested without a clock to wait for, in tests/server/test_credentials.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from server.app import create_app
from server.settings import Settings
from tests.support.oidc import Issuer, oidc_issuer
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, serving

pytestmark = pytest.mark.cluster

VIEWER = "{ viewer { user } }"
NODE_EVENTS = "subscription { nodeEvents(initial: true) { kind } }"
LIFETIME = 3  # seconds a test token lives
# The server acts at `exp`; the margin is for a loaded test host, not for the server.
MARGIN = 3.0
STREAM_ACCEPT = {
    "sse": "text/event-stream",
    "multipart": 'multipart/mixed;subscriptionSpec="1.0", application/json',
}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with oidc_issuer() as made:
        yield made


def short_lived(issuer: Issuer) -> tuple[str, int]:
    """alice's token, expiring LIFETIME seconds from now, and its `exp`."""
    exp = int(time.time()) + LIFETIME
    return issuer.token(username="alice", exp=exp), exp


def app_for(issuer: Issuer) -> Any:
    return create_app(Settings.from_environ(issuer.environ(SLURM_GRAPHQL_POLL_INTERVAL="0.5")))


async def _open(url: str, protocol: str, token: str, where: str) -> websockets.ClientConnection:
    """A socket acknowledged as alice, the token in the upgrade header or in connection_init."""
    headers = {"Authorization": f"Bearer {token}"} if where == "header" else {}
    payload = {"Authorization": f"Bearer {token}"} if where == "init" else {}
    socket = await websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
    )
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert ack["type"] == "connection_ack", ack
    return socket


async def _operation(
    socket: websockets.ClientConnection, protocol: str, op_id: str, query: str
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": query, "variables": {}}
    await socket.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))


async def _answers(socket: websockets.ClientConnection, within: float) -> list[dict[str, Any]]:
    """Every message until the socket closes (or `within` seconds pass), keep-alives aside."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            message = json.loads(await asyncio.wait_for(socket.recv(), left))
            if message.get("type") not in ("ka", "ping", "pong"):
                seen.append(message)
    except (TimeoutError, websockets.ConnectionClosed):
        pass
    return seen


@pytest.mark.parametrize("where", ["init", "header"])
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_websocket_is_closed_when_its_token_expires(
    protocol: str, where: str, issuer: Issuer, unix_users: None
) -> None:
    """A socket following nodes as alice (its token in the upgrade header or connection_init)
    is closed with 4401 at `exp`, its subscription with it, though the client sends nothing
    more."""
    token, exp = short_lived(issuer)
    async with serving(app_for(issuer)) as url:
        socket = await _open(url, protocol, token, where)
        try:
            await _operation(socket, protocol, "1", NODE_EVENTS)
            first = await _answers(socket, 2)
            assert any(m.get("payload", {}).get("data") for m in first), first
            await _answers(socket, exp - time.time() + MARGIN)
            closed_at = time.time()
        finally:
            await socket.close()
    assert socket.close_code == 4401, socket.close_code
    assert exp - 0.1 <= closed_at < exp + MARGIN  # not before the token stops proving alice


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_operation_sent_after_expiry_does_not_run(
    protocol: str, issuer: Issuer, unix_users: None
) -> None:
    """The reproduction: an operation sent a second after `exp` on a socket opened before it
    gets no answer (a query; graphql-ws, which carries only subscriptions, a subscription);
    the socket is closed with 4401."""
    query = VIEWER if protocol == TRANSPORT_WS else NODE_EVENTS
    token, exp = short_lived(issuer)
    async with serving(app_for(issuer)) as url:
        socket = await _open(url, protocol, token, "init")
        try:
            await asyncio.sleep(exp - time.time() + 1)
            # Closed at expiry, the socket may refuse the message outright.
            with contextlib.suppress(websockets.ConnectionClosed):
                await _operation(socket, protocol, "late", query)
            answered = await _answers(socket, 3)
        finally:
            await socket.close()
    assert answered == [], answered
    assert socket.close_code == 4401, socket.close_code


@pytest.mark.parametrize("stream", ["sse", "multipart"])
async def test_a_streamed_subscription_ends_at_expiry(
    stream: str, issuer: Issuer, unix_users: None
) -> None:
    """A subscription streamed over HTTP delivers events until `exp`, then one error coded
    UNAUTHENTICATED, and the response ends."""
    token, exp = short_lived(issuer)
    headers = {"Authorization": f"Bearer {token}", "Accept": STREAM_ACCEPT[stream]}
    body = b""
    async with (
        serving(app_for(issuer)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("POST", "/graphql", json={"query": NODE_EVENTS}, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        try:
            async with asyncio.timeout(exp - time.time() + MARGIN):
                async for chunk in reply.aiter_bytes():
                    body += chunk
            ended_at = time.time()
        except TimeoutError:
            pytest.fail(f"the stream outlived its token: {body[-300:]!r}")
    text = body.decode()
    assert "SNAPSHOT" in text  # it served alice until then
    assert '"code": "UNAUTHENTICATED"' in text or '"code":"UNAUTHENTICATED"' in text, text[-300:]
    assert text.rstrip().endswith(("event: complete\r\ndata:", "--graphql--"))
    assert ended_at < exp + MARGIN
