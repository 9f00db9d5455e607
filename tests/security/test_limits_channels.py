"""One rate limit and one subscription count per user, whatever channel the operations take:
HTTP, WebSocket (both protocols), server-sent events and Lambda events, on the real cluster."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from server.ws_limits import REFUSALS_BEFORE_CLOSE
from tests.conftest import TOKENS, open_inner_transport
from tests.support.counting import CountingTransport
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, Connection, serving

QUERY = "{ cluster { name } }"
NODE_EVENTS = "subscription { nodeEvents { kind } }"


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


@dataclass
class Live:
    url: str
    transport: CountingTransport


@pytest.fixture(params=["local", "ssm"])
async def limited(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[Live]:
    """The API under uvicorn with the test token map, at 2 operations a second, burst 3,
    4 subscriptions per user and 3 WebSockets per client."""
    inner = open_inner_transport(request, request.param)
    transport = CountingTransport(inner)
    settings = Settings(
        tokens=parse_token_map(TOKENS),
        rate_limit=2.0,
        rate_burst=3,
        max_subscriptions_per_user=4,
        max_websockets_per_client=3,
        poll_interval=60,
    )
    try:
        async with serving(create_app(settings, {"local": transport})) as url:
            yield Live(url, transport)
    finally:
        await inner.aclose()


async def test_a_flood_on_one_socket_is_rate_limited_after_the_burst(limited: Live) -> None:
    """200 queries on one socket at 2/s: the burst of 3 runs, then each is refused for its own
    id with RATE_LIMITED and retryAfter, and a client that keeps on is closed with 4429."""
    async with Connection.open(limited.url, payload=auth("alice")) as connection:
        burst = [await connection.subscribe(QUERY) for _ in range(3)]
        ran = [await subscription.next() for subscription in burst]
        started = time.monotonic()
        flood = [await connection.subscribe(QUERY) for _ in range(197)]
        await asyncio.wait_for(connection.closed.wait(), 10)
        elapsed = time.monotonic() - started
        close_code = connection.socket.close_code
    answers = [s.connection._inboxes[s.id] for s in flood]
    first = [inbox.get_nowait() for inbox in answers if not inbox.empty()]
    refused = [m for m in first if m.kind == "error"]
    assert [m.kind for m in ran] == ["next"] * 3
    assert len(first) - len(refused) <= int(elapsed * 2) + 1  # what the refill allows
    assert len(refused) >= REFUSALS_BEFORE_CLOSE
    for message in refused:
        assert message.payload[0]["extensions"]["code"] == "RATE_LIMITED"
        assert message.payload[0]["extensions"]["retryAfter"] >= 1
    assert close_code == 4429


async def test_a_refused_operation_leaves_the_socket_open(limited: Live) -> None:
    """Past the burst an operation is refused for its id only; after retryAfter it runs."""
    async with Connection.open(limited.url, payload=auth("alice")) as connection:
        for _ in range(3):
            assert (await (await connection.subscribe(QUERY)).next()).kind == "next"
        refused = await (await connection.subscribe(QUERY)).next()
        assert refused.kind == "error"
        await asyncio.sleep(refused.payload[0]["extensions"]["retryAfter"])
        again = await (await connection.subscribe(QUERY)).next()
        assert again.kind == "next" and not connection.closed.is_set()


async def test_the_legacy_protocol_is_rate_limited_too(limited: Live) -> None:
    """graphql-ws `start` messages spend the same bucket as HTTP requests of the same user."""
    async with httpx.AsyncClient(base_url=limited.url, headers=auth("bob")) as client:
        for _ in range(2):
            response = await client.post("/graphql", json={"query": QUERY})
            assert response.status_code == 200
    async with Connection.open(limited.url, LEGACY_WS, payload=auth("bob")) as connection:
        admitted = await connection.subscribe(NODE_EVENTS)
        refused = await (await connection.subscribe(NODE_EVENTS)).next()
        with pytest.raises(TimeoutError):
            await admitted.next(within=0.5)  # open, waiting for events: no error
    assert refused.kind == "error"
    assert refused.payload["extensions"]["code"] == "RATE_LIMITED"


async def test_one_user_over_three_connections_hits_one_subscription_cap(limited: Live) -> None:
    """Subscriptions count per user across sockets; another user is not affected."""
    async with (
        Connection.open(limited.url, payload=auth("alice")) as one,
        Connection.open(limited.url, payload=auth("alice")) as two,
    ):
        held = [await one.subscribe(NODE_EVENTS), await one.subscribe(NODE_EVENTS)]
        held += [await two.subscribe(NODE_EVENTS)]
        await asyncio.sleep(1.5)  # let the bucket refill past the burst of 3
        held += [await two.subscribe(NODE_EVENTS)]
        await asyncio.sleep(0.6)
        async with Connection.open(limited.url, payload=auth("alice")) as three:
            refused = await (await three.subscribe(NODE_EVENTS)).next()
            assert refused.kind == "error"
            assert refused.payload[0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await held[0].stop()
            await asyncio.sleep(0.6)
            admitted = await three.subscribe(NODE_EVENTS)
            with pytest.raises(TimeoutError):
                await admitted.next(within=1)  # no error: it is open, waiting for events
        async with Connection.open(limited.url, payload=auth("bob")) as other:
            with pytest.raises(TimeoutError):
                await (await other.subscribe(NODE_EVENTS)).next(within=1)


async def test_server_sent_events_count_against_the_same_cap(limited: Live) -> None:
    """With 3 subscriptions open on a socket, a user's first SSE stream is the 4th and
    last; the next gets 429 TOO_MANY_SUBSCRIPTIONS."""
    headers = {**auth("carol"), "Accept": "text/event-stream"}
    body = {"query": NODE_EVENTS}
    async with (
        Connection.open(limited.url, payload=auth("carol")) as connection,
        httpx.AsyncClient(base_url=limited.url, timeout=10) as client,
    ):
        for _ in range(3):
            await connection.subscribe(NODE_EVENTS)
        await asyncio.sleep(1.0)
        async with client.stream("POST", "/graphql", json=body, headers=headers) as stream:
            assert stream.status_code == 200
            await asyncio.sleep(0.6)
            refused = await client.post("/graphql", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        # The stream has ended: its slot is free again.
        await asyncio.sleep(0.6)
        async with client.stream("POST", "/graphql", json=body, headers=headers) as again:
            assert again.status_code == 200


async def test_the_stream_cap_reads_accept_case_insensitively(unix_users: None) -> None:
    """Media types are case-insensitive and strawberry streams `Text/Event-Stream` too: at a
    cap of one stream, a second one so spelled gets 429 TOO_MANY_SUBSCRIPTIONS."""
    settings = Settings(
        tokens=parse_token_map(TOKENS), max_subscriptions_per_user=1, poll_interval=60
    )
    body = {"query": NODE_EVENTS}
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        first = {**auth("alice"), "Accept": "Text/Event-Stream"}
        async with client.stream("POST", "/graphql", json=body, headers=first) as stream:
            assert stream.status_code == 200
            second = {**auth("alice"), "Accept": "TEXT/EVENT-STREAM; charset=utf-8"}
            refused = await client.post("/graphql", json=body, headers=second)
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def test_server_sent_events_are_rate_limited(limited: Live) -> None:
    """Each SSE request spends a token: past the burst, 429 RATE_LIMITED with Retry-After."""
    headers = {**auth("alice"), "Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=limited.url, timeout=10) as client:
        codes = [
            (await client.post("/graphql", json={"query": QUERY}, headers=headers)).status_code
            for _ in range(5)
        ]
        refused = await client.post("/graphql", json={"query": QUERY}, headers=headers)
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def _refused_socket(url: str, **connect: Any) -> int | None:
    """Open a socket as alice and return the code it was closed with (None: still open)."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS], **connect) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": auth("alice")}
        try:
            await socket.send(json.dumps(init))
            while True:
                await asyncio.wait_for(socket.recv(), 2)
        except TimeoutError:
            return None
        except websockets.ConnectionClosed:
            return socket.close_code


async def test_one_identity_holds_a_bounded_number_of_sockets(limited: Live) -> None:
    """Alice from three addresses holds 3 sockets; a 4th, from a 4th address, is closed 4429."""
    async with (
        Connection.open(limited.url, payload=auth("alice"), local_addr=("127.0.0.2", 0)),
        Connection.open(limited.url, payload=auth("alice"), local_addr=("127.0.0.3", 0)),
        Connection.open(limited.url, payload=auth("alice"), local_addr=("127.0.0.4", 0)),
    ):
        assert await _refused_socket(limited.url, local_addr=("127.0.0.5", 0)) == 4429


async def test_one_address_holds_a_bounded_number_of_sockets(limited: Live) -> None:
    """Three sockets from 127.0.0.6 (even unauthenticated) and the 4th is closed 4429;
    another address still connects."""
    address = ("127.0.0.6", 0)
    url = limited.url.replace("http://", "ws://") + "/graphql"
    async with (
        websockets.connect(url, subprotocols=[TRANSPORT_WS], local_addr=address),  # type: ignore[list-item]
        websockets.connect(url, subprotocols=[TRANSPORT_WS], local_addr=address),  # type: ignore[list-item]
        websockets.connect(url, subprotocols=[TRANSPORT_WS], local_addr=address),  # type: ignore[list-item]
    ):
        assert await _refused_socket(limited.url, local_addr=address) == 4429
        assert await _refused_socket(limited.url, local_addr=("127.0.0.7", 0)) is None


async def test_slots_come_back_however_operations_end(unix_users: None) -> None:
    """Malformed subscribes and closed sockets leave no slot held: the cap of 4 is whole after."""
    settings = Settings(tokens=parse_token_map(TOKENS), max_subscriptions_per_user=4)
    async with serving(create_app(settings)) as url:
        for _ in range(6):  # a subscribe without a query: the socket is closed with 4400
            async with Connection.open(url, payload=auth("alice")) as broken:
                await broken.socket.send(
                    json.dumps({"id": "x", "type": "subscribe", "payload": {}})
                )
                await asyncio.wait_for(broken.closed.wait(), 5)
                assert broken.socket.close_code == 4400
        for _ in range(2):  # four held, then the socket goes away
            async with Connection.open(url, payload=auth("alice")) as full:
                held = [await full.subscribe(NODE_EVENTS) for _ in range(4)]
                refused = await (await full.subscribe(NODE_EVENTS)).next()
                assert refused.payload[0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
                with pytest.raises(TimeoutError):
                    await held[-1].next(within=0.5)
            await asyncio.sleep(0.5)  # the server notices the close and cancels the operations
