"""Hard caps before parsing, on every channel, and a document cache bounded by bytes that keeps
only what authenticated callers sent: measured in memory, CPU and /healthz latency, over real
uvicorn and real WebSockets."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.server import running_server
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, Connection, serving
from transport.local import LocalTransport

MiB = 1024 * 1024
ALICE = {"Authorization": "Bearer alice-token"}


def document(index: int, size: int) -> str:
    """A distinct document of about `size` bytes: one string literal and a few tokens."""
    literal = f"{index:08d}" + "x" * max(0, size - 40)
    return f'{{ cluster(name: "{literal}") {{ name }} }}'


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or ()]


@pytest.fixture
async def url(slurm_cluster: str, unix_users: None) -> AsyncIterator[str]:
    """The API under uvicorn with the test token map, 16 KiB documents of 1,000 tokens at most
    (small enough for uvicorn to take a GET over the cap) and the default 1 MiB messages."""
    settings = Settings(
        tokens=parse_token_map(TOKENS),
        max_document_bytes=16 * 1024,
        max_tokens=1_000,
        poll_interval=60,
    )
    async with serving(create_app(settings, {"local": LocalTransport()})) as base:
        yield base


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/graphql"


async def _send_raw(base: str, protocol: str, message: str) -> int | None:
    """Open a socket as alice, send `message`, and return the code it is closed with."""
    subprotocols = [websockets.Subprotocol(protocol)]
    async with websockets.connect(ws_url(base), subprotocols=subprotocols, max_size=None) as socket:
        init = {"type": "connection_init", "payload": ALICE}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(message)
        try:
            while True:
                await asyncio.wait_for(socket.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return socket.close_code


def subscribe_message(protocol: str, query: str, operation_id: str = "1") -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return json.dumps({"id": operation_id, "type": kind, "payload": {"query": query}})


async def raw_get(base: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """GET /graphql as alice with a query string of any length (httpx refuses long ones)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = (
            f"GET /graphql?{urlencode(params)} HTTP/1.1\r\nHost: {host}\r\n"
            f"Accept: application/json\r\nAuthorization: {ALICE['Authorization']}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode())
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = b"".join(body.split(b"\r\n")[1::2])
    return int(head.split()[1]), json.loads(body)


async def _held_after(send: Any) -> int:
    """Bytes of Python memory still held once `send()` has run and its sockets closed."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await send()
        await asyncio.sleep(0.2)  # the server's side of the closed sockets ends
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_big_websocket_messages_leave_no_memory_behind(url: str, protocol: str) -> None:
    """10 distinct 2 MB documents over WebSocket, each on its own socket: each socket is closed
    with 1009 and under 2 MiB stays held (they used to be parsed and cached: ~40 MB)."""
    closes: list[int | None] = []

    async def send() -> None:
        for index in range(10):
            message = subscribe_message(protocol, document(index, 2 * MiB))
            closes.append(await _send_raw(url, protocol, message))

    held = await _held_after(send)
    assert closes == [1009] * 10
    assert held < 2 * MiB, f"{held / MiB:.1f} MiB held"


async def test_the_document_cache_is_bounded_by_bytes(slurm_cluster: str) -> None:
    """60 distinct 100 KB documents (under the document cap) from an authenticated user, with
    a 2 MiB cache: under 4 MiB stays held (a cache counting entries kept ~12 MB of them)."""
    settings = Settings(tokens=parse_token_map(TOKENS), document_cache_bytes=2 * MiB)
    app = create_app(settings, {"local": LocalTransport()})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
    ):
        statuses: set[int] = set()

        async def send() -> None:
            for index in range(60):
                body = {"query": document(index, 100_000)}
                statuses.add((await client.post("/graphql", json=body, headers=ALICE)).status_code)

        held = await _held_after(send)
    assert statuses == {200}
    assert held < 4 * MiB, f"{held / MiB:.1f} MiB held"


async def test_a_document_over_the_cap_is_refused_on_every_channel(url: str) -> None:
    """A 20 KB document (the cap is 16 KiB) gets DOCUMENT_TOO_LARGE over POST, GET, SSE and
    both WebSocket protocols, where the socket stays open for the next operation."""
    big = document(1, 20_000)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        posted = await client.post("/graphql", json={"query": big}, headers=ALICE)
        sse = await client.post(
            "/graphql",
            json={"query": big},
            headers={**ALICE, "Accept": "text/event-stream"},
        )
    assert codes(posted.json()) == ["DOCUMENT_TOO_LARGE"]
    status, got = await raw_get(url, {"query": big})
    assert (status, codes(got)) == (200, ["DOCUMENT_TOO_LARGE"])
    assert "DOCUMENT_TOO_LARGE" in sse.text
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        async with Connection.open(url, protocol, payload=ALICE) as connection:
            refused = await (await connection.subscribe(big)).next()
            payload = refused.payload if protocol == LEGACY_WS else refused.payload[0]
            errors = payload.get("errors", [payload]) if isinstance(payload, dict) else payload
            assert refused.kind in ("error", "next")
            assert [e["extensions"]["code"] for e in errors] == ["DOCUMENT_TOO_LARGE"], refused
            await asyncio.sleep(0.2)
            assert not connection.closed.is_set()
            if protocol == TRANSPORT_WS:  # graphql-ws (legacy) runs subscriptions only
                after = await (await connection.subscribe("{ viewer { user } }")).next()
                assert after.payload["data"] == {"viewer": {"user": "alice"}}


async def test_too_many_tokens_is_query_too_complex_on_every_channel(url: str) -> None:
    """A document of 2,000 tokens in 4 KB (under the byte cap; the token cap is 1,000) gets
    QUERY_TOO_COMPLEX over POST and both WebSocket protocols, which stay open."""
    many = "{ " + "a " * 2_000 + "}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        posted = await client.post("/graphql", json={"query": many}, headers=ALICE)
    assert codes(posted.json()) == ["QUERY_TOO_COMPLEX"]
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        async with Connection.open(url, protocol, payload=ALICE) as connection:
            refused = await (await connection.subscribe(many)).next()
            payload = refused.payload if protocol == LEGACY_WS else refused.payload[0]
            errors = payload.get("errors", [payload]) if isinstance(payload, dict) else payload
            assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"], refused


async def test_a_long_query_string_is_414(url: str) -> None:
    """A GET whose query string is longer than 3 x the document cap gets 414 URI_TOO_LONG."""
    status, answer = await raw_get(url, {"query": "{ viewer { user } }", "pad": "x" * 60_000})
    assert (status, codes(answer)) == (414, ["URI_TOO_LONG"])


MALFORMED = {
    "not JSON": "{type: connection_init",
    "nested too deeply": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_websocket_messages_close_with_4400(
    url: str, protocol: str, name: str
) -> None:
    """A message that is not JSON, or nests past the decoder, closes the socket with 4400 on
    both protocols (graphql-ws used to skip it; deep nesting was a server fault)."""
    assert await _send_raw(url, protocol, MALFORMED[name]) == 4400


@pytest.fixture
def served(slurm_cluster: str) -> Iterator[str]:
    """`slurm-graphql serve` as deployed (its uvicorn settings), anonymous on loopback."""
    with running_server({"SLURM_GRAPHQL_POLL_INTERVAL": "60"}) as base:
        yield base


async def test_a_big_message_does_not_stall_healthz(served: str) -> None:
    """While a 15 MB WebSocket message arrives, /healthz keeps answering within 0.5 s: the
    message is refused (1009) as its frame arrives instead of being decoded and parsed."""
    message = subscribe_message(TRANSPORT_WS, document(1, 15 * 1000 * 1000))
    latencies: list[float] = []
    sent = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            while not sent.is_set() or len(latencies) < 20:
                started = time.monotonic()
                assert (await client.get("/healthz")).status_code == 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.05)

    async def attack() -> int | None:
        try:
            return await _send_raw(served, TRANSPORT_WS, message)
        finally:
            sent.set()

    prober = asyncio.create_task(probe())
    code = await attack()
    await prober
    assert code == 1009
    assert max(latencies) < 0.5, f"/healthz took {max(latencies):.2f} s"
