"""DNS rebinding: a page on http://r.example:8000 whose name now resolves to 127.0.0.1 must not
reach an anonymous server on loopback. Only loopback Host names (and SLURM_GRAPHQL_ALLOWED_HOSTS)
are answered, on HTTP and on WebSocket upgrades, by a real uvicorn server."""

from __future__ import annotations

import asyncio
import base64
import os

import httpx
import pytest

from server.app import create_app
from server.hosts import host_allowed, host_name
from server.settings import Settings, SettingsError
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.counting import CountingTransport
from tests.support.ws import serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

QUERY = b'{"query": "{ cluster { name } }"}'


async def raw_request(url: str, head: str, body: bytes = b"") -> str:
    """The status line a server answers to a hand-written request (Host as given, no client
    library second-guessing it)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()


def post(host: str) -> str:
    return (
        f"POST /graphql HTTP/1.1\nHost: {host}\nOrigin: http://{host}\n"
        f"Content-Type: application/json\nContent-Length: {len(QUERY)}\n"
    )


def upgrade(host: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /graphql HTTP/1.1\nHost: {host}\nOrigin: http://{host}\nUpgrade: websocket\n"
        f"Connection: Upgrade\nSec-WebSocket-Key: {key}\nSec-WebSocket-Version: 13\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\n"
    )


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("r.example:8000", "r.example"),
        ("[::1", None),
        ("[r.example]:80", None),
        ("host:port", None),
        ("", None),
    ],
)
def test_host_headers_are_read_strictly(header: str, host: str | None) -> None:
    """The host part, without the port, lower-cased; anything malformed is None (refused)."""
    assert host_name(header) == host


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("r.example", False),
        ("localhost.r.example", False),
        ("127.0.0.1.nip.io", False),
        ("0.0.0.0", False),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback, on every Python (test_browsers.py)
        (None, False),
    ],
)
def test_only_loopback_names_pass_in_anonymous_mode(host: str | None, allowed: bool) -> None:
    """Loopback is localhost, 127.0.0.0/8 and ::1; look-alike names are other hosts."""
    assert host_allowed(host, (), loopback=True) is allowed


async def test_a_rebound_page_gets_421_on_http_and_websocket(slurm_cluster: str) -> None:
    """Anonymous server: `Host: r.example:8000` (with its Origin) is refused with 421 for a
    query and for a WebSocket upgrade, and nothing reaches the cluster; loopback names work."""
    transport = CountingTransport(LocalTransport())
    app = create_app(Settings(), transports={"local": transport})
    async with serving(app) as url:
        assert "421" in await raw_request(url, post("r.example:8000"), QUERY)
        assert "421" in await raw_request(url, upgrade("r.example:8000"))
        assert transport.calls == 0
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
            assert " 200 " in await raw_request(url, post(host), QUERY)
        assert " 101 " in await raw_request(url, upgrade("localhost:8000"))
        # Health stays reachable by address: load balancers probe the task's IP.
        assert " 200 " in await raw_request(url, "GET /healthz HTTP/1.1\nHost: 10.0.0.7\n")


async def test_the_refusal_is_typed(slurm_cluster: str) -> None:
    """The 421 body is a GraphQL error with code HOST_NOT_ALLOWED."""
    app = create_app(Settings(), transports={"local": LocalTransport()})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://r.example:8000"
        ) as client,
    ):
        response = await client.post("/graphql", json={"query": "{ viewer { user } }"})
    assert response.status_code == 421
    assert response.json()["errors"][0]["extensions"]["code"] == "HOST_NOT_ALLOWED"


async def test_allowed_hosts_extend_anonymous_mode_and_restrict_the_others(
    slurm_cluster: str,
) -> None:
    """SLURM_GRAPHQL_ALLOWED_HOSTS adds names to anonymous mode; with tokens it is the whole
    list (no loopback either); `*.example.org` covers subdomains only."""
    anonymous = Settings.from_environ({"SLURM_GRAPHQL_ALLOWED_HOSTS": "api.example.org"})
    tokens = Settings(tokens=parse_token_map(TOKENS), allowed_hosts=("*.example.org",))
    expected = [
        (anonymous, {"api.example.org": 200, "localhost": 200, "r.example": 421}),
        (tokens, {"hpc.example.org": 200, "example.org": 421, "localhost": 421}),
    ]
    for settings, answers in expected:
        app = create_app(settings, transports={"local": LocalTransport()})
        async with serving(app) as url:
            for host, status in answers.items():
                head = post(host) + "Authorization: Bearer alice-token\n"
                assert f" {status} " in await raw_request(url, head, QUERY), (host, status)


def test_allowed_hosts_are_validated() -> None:
    """A port, a URL or a blank name is a configuration error, not a silent mismatch."""
    for value in ("api.example.org:443", "https://api.example.org", "a b"):
        with pytest.raises(SettingsError, match="ALLOWED_HOSTS"):
            Settings.from_environ({"SLURM_GRAPHQL_ALLOWED_HOSTS": value})
