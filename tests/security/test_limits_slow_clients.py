"""Slow and greedy clients against a real `slurm-graphql serve` process: a head or body that
dribbles in is cut off in time, idle connections beyond the caps are refused, and a normal
client is still served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TOKENS
from tests.support.server import running_server

HEADER_TIMEOUT = 1.0
SLACK = 1.5  # scheduling on a loaded 2-core machine
QUERY = {"query": "{ cluster { name } }"}
ALICE = {"Authorization": "Bearer alice-token"}


@pytest.fixture
def server(slurm_cluster: str, unix_users: None) -> Iterator[str]:
    """`serve` with a 1 s head and body deadline, 10 connections per address, 25 in all."""
    environ = {
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "SLURM_GRAPHQL_BODY_TIMEOUT": "1",
        "SLURM_GRAPHQL_MAX_CONNECTIONS_PER_ADDRESS": "10",
        "SLURM_GRAPHQL_MAX_CONNECTIONS": "25",
        # Only 127.0.0.1 speaks for others; the attackers come from other loopback addresses.
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    with running_server(environ) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing the connection (EOF or reset) within `seconds`;
    None if it is still open then."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(1024):
                received += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass  # reset, or our own write that failed because it was closed
    return received


async def open_from(url: str, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(url), local_addr=(address, 0))


async def served(url: str) -> int:
    """A normal client's query, on a connection of its own: its status."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post("/graphql", json=QUERY, headers=ALICE)
    if response.status_code == 200:
        assert response.json()["data"]["cluster"]["name"] == "local"
    return response.status_code


async def test_a_client_that_dribbles_its_headers_is_cut_off(server: str) -> None:
    """A header byte every 0.1 s: the connection is closed by the head deadline, unanswered."""
    reader, writer = await open_from(server, "127.0.0.2")
    head = b"POST /graphql HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    started = time.monotonic()
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
            if reader.at_eof():
                break
    except ConnectionError:
        pass
    assert await closed_within(reader, HEADER_TIMEOUT + SLACK) == b""  # closed, unanswered
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(server: str) -> None:
    """An idle new connection is closed by the head deadline, not held for ever."""
    reader, writer = await open_from(server, "127.0.0.2")
    assert await closed_within(reader, HEADER_TIMEOUT + SLACK) == b""
    writer.close()


async def test_a_body_that_dribbles_in_gets_408(server: str) -> None:
    """Headers complete, then a body byte every 0.3 s: 408 REQUEST_TIMEOUT and the connection
    closed, before the body is through."""
    reader, writer = await open_from(server, "127.0.0.2")
    body = json.dumps(QUERY).encode()
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer alice-token\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    reading = asyncio.create_task(closed_within(reader, 6))
    try:
        for byte in body[:10]:
            if reading.done():
                break  # answered and closed: writing more would only reset the connection
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)
    except ConnectionError:
        pass
    answer = await reading
    writer.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")
    assert b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < 1 + SLACK + 3


async def test_idle_connections_beyond_the_cap_are_refused_while_others_are_served(
    server: str,
) -> None:
    """50 idle connections from one address: 10 are held, 40 closed at once; a normal client
    is served meanwhile."""
    opened = [await open_from(server, "127.0.0.3") for _ in range(50)]
    try:
        ends = await asyncio.gather(*(closed_within(r, 0.5) for r, _ in opened))
        assert sum(end is not None for end in ends) == 40
        assert await served(server) == 200
    finally:
        for _, writer in opened:
            writer.close()


async def test_past_the_connection_cap_requests_get_503_until_idlers_are_cut(server: str) -> None:
    """Idlers from three addresses fill the 25 connections: 503 for a new request; once the
    head deadline has closed them, the normal client is served again."""
    opened = [
        await open_from(server, address)
        for address in ("127.0.0.4", "127.0.0.5", "127.0.0.6")
        for _ in range(9)
    ]
    try:
        assert await served(server) == 503
        await asyncio.sleep(HEADER_TIMEOUT + SLACK)
        assert await served(server) == 200
    finally:
        for _, writer in opened:
            writer.close()
