"""What a web page in a developer's browser can make the server do: nothing, unless the page is
on an allowed origin. Cross-site POSTs to an anonymous server and every browser's WebSocket are
held to the allow-list (server/origins.py), never to the request's own Host, over a real uvicorn
server and hand-written requests (so no client library second-guesses Host or Origin)."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from server.app import create_app
from server.hosts import host_allowed, host_name, parse_allowed_hosts
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.counting import CountingTransport
from tests.support.ws import serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

QUERY = b'{"query": "{ cluster { name } }"}'
EVIL = "http://evil.example"


async def answer(url: str, head: str, body: bytes = b"") -> tuple[int, str]:
    """Status and the start of the body of the server's answer to a hand-written request."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        rest = b""
        if status != 101:
            rest = await asyncio.wait_for(reader.read(2000), 10)
        return status, rest.decode(errors="replace")
    finally:
        writer.close()


def post(host: str, *headers: str, content_type: str = "application/json") -> str:
    lines = "".join(f"{line}\n" for line in headers)
    return (
        f"POST /graphql HTTP/1.1\nHost: {host}\n{lines}Content-Type: {content_type}\n"
        f"Content-Length: {len(QUERY)}\nConnection: close\n"
    )


def upgrade(host: str, *headers: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = "".join(f"{line}\n" for line in headers)
    return (
        f"GET /graphql HTTP/1.1\nHost: {host}\n{lines}Upgrade: websocket\n"
        f"Connection: Upgrade\nSec-WebSocket-Key: {key}\nSec-WebSocket-Version: 13\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\n"
    )


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost.:8000", "localhost"),
        ("LocalHost.", "localhost"),
        ("[::ffff:127.0.0.1]:8000", "127.0.0.1"),
        ("[::FFFF:7f00:1]", "127.0.0.1"),
        ("[0:0:0:0:0:0:0:1]:80", "::1"),
        ("api.example.org.:443", "api.example.org"),
        ("localhost..", None),
        (".", None),
        ("evil.example/.example.org", None),
    ],
)
def test_host_names_have_one_canonical_form(header: str, host: str | None) -> None:
    """Trailing dot, IPv4-mapped IPv6, long IPv6 spellings, case and port are read one way."""
    assert host_name(header) == host


def test_loopback_is_the_same_on_every_python() -> None:
    """`::ffff:127.0.0.1` is loopback (Python 3.13 says so, 3.11 did not); a mapped outside
    address is that address, matched against the list as such."""
    assert host_allowed(host_name("[::ffff:127.0.0.1]"), (), loopback=True)
    assert not host_allowed(host_name("[::ffff:10.0.0.7]"), (), loopback=True)
    listed = parse_allowed_hosts("API.example.org., [::ffff:10.0.0.7]")
    assert listed == ("api.example.org", "10.0.0.7")
    assert host_allowed(host_name("[::ffff:10.0.0.7]:8000"), listed, loopback=False)


@pytest.mark.parametrize(
    "headers",
    [
        (f"Origin: {EVIL}",),
        ("Origin: http://r.example:8000", "Sec-Fetch-Site: cross-site"),
        ("Origin: null",),  # a sandboxed frame or a file: page
        ("Sec-Fetch-Site: cross-site",),  # a browser that left Origin out
        # Says "same-origin": only a browser's word counts, and the Origin says otherwise.
        (f"Origin: {EVIL}", "Sec-Fetch-Site: same-origin"),
    ],
)
async def test_a_cross_site_post_to_an_anonymous_server_is_refused(
    slurm_cluster: str, headers: tuple[str, ...]
) -> None:
    """Anonymous server on loopback, loopback Host: a POST from another site's page gets 403
    ORIGIN_NOT_ALLOWED and reaches nothing, whatever its content type (strawberry reads
    'application/json, text/plain' as JSON; Chromium does not let a page send it cross-site
    without a preflight today, but the origin, not a parser's detail, is the defence)."""
    transport = CountingTransport(LocalTransport())
    async with serving(create_app(Settings(), transports={"local": transport})) as url:
        for content_type in ("application/json", "application/json, text/plain"):
            head = post("localhost:8000", *headers, content_type=content_type)
            status, body = await answer(url, head, QUERY)
            assert (status, "ORIGIN_NOT_ALLOWED" in body) == (403, True), body
    assert transport.calls == 0


def get(*headers: str) -> str:
    lines = "".join(f"{line}\n" for line in headers)
    query = "%7B%20cluster%20%7B%20name%20%7D%20%7D"  # { cluster { name } }
    return f"GET /graphql?query={query} HTTP/1.1\nHost: localhost:8000\n{lines}Connection: close\n"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        # <img src="http://localhost:8000/graphql?query=…"> on another site: runs nothing.
        (("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors", "Accept: image/*"), 403),
        (("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: cors", f"Origin: {EVIL}"), 403),
        # A link followed from another site shows GraphiQL, which runs nothing by itself.
        (("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Accept: text/html"), 200),
        (("Sec-Fetch-Site: same-site", "Sec-Fetch-Mode: no-cors", "Accept: */*"), 200),
        (("Accept: application/json",), 200),  # curl, scripts
    ],
)
async def test_a_cross_site_get_runs_no_query_on_an_anonymous_server(
    slurm_cluster: str, headers: tuple[str, ...], status: int
) -> None:
    """Another site's page cannot spend the cluster's time through its visitors' browsers with
    GET queries (image or script tags, fetches); navigations and non-browsers are answered."""
    transport = CountingTransport(LocalTransport())
    async with serving(create_app(Settings(), transports={"local": transport})) as url:
        got, body = await answer(url, get(*headers))
    assert got == status, body
    if status == 403:
        assert "ORIGIN_NOT_ALLOWED" in body and transport.calls == 0


@pytest.mark.parametrize(
    ("settings", "origin"),
    [
        (Settings(), None),  # curl, scripts: no Origin
        (Settings(), "http://localhost:8000"),  # GraphiQL served here
        (Settings(), "http://127.0.0.1:3000"),  # a local development page
        (Settings(), "http://[::1]:3000"),
        (Settings(allowed_hosts=("api.example.org",)), "https://api.example.org"),
        (Settings(cors_origins=("https://portal.example.org",)), "https://portal.example.org"),
    ],
)
async def test_allowed_origins_still_post(
    slurm_cluster: str, settings: Settings, origin: str | None
) -> None:
    """Pages on loopback, on an allowed host or a CORS origin, and clients without Origin."""
    async with serving(create_app(settings, transports={"local": LocalTransport()})) as url:
        headers = () if origin is None else (f"Origin: {origin}",)
        status, body = await answer(url, post("localhost:8000", *headers), QUERY)
    assert status == 200, body


async def test_with_authentication_http_is_left_to_the_token(slurm_cluster: str) -> None:
    """Tokens travel in a header no cross-site page can set without CORS: a cross-origin POST
    with a token is not an attack, and is answered (without one: 401 as ever)."""
    settings = Settings(tokens=parse_token_map(TOKENS))
    async with serving(create_app(settings, transports={"local": LocalTransport()})) as url:
        token = "Authorization: Bearer alice-token"
        assert (await answer(url, post("localhost", f"Origin: {EVIL}", token), QUERY))[0] == 200
        assert (await answer(url, post("localhost", f"Origin: {EVIL}"), QUERY))[0] == 401


@pytest.mark.parametrize(
    ("settings", "host", "headers", "status"),
    [
        # Rebinding: the attacker's name in Host and Origin alike; with tokens and no list of
        # hosts every Host is answered, so only the origin check stands in the way.
        (
            Settings(tokens=parse_token_map(TOKENS)),
            "r.example:8000",
            ("Origin: http://r.example:8000",),
            403,
        ),
        (
            Settings(tokens=parse_token_map(TOKENS)),
            "localhost:8000",
            ("Origin: http://localhost:8000",),
            403,
        ),
        (Settings(), "localhost:8000", (f"Origin: {EVIL}", "Sec-Fetch-Site: same-origin"), 403),
        (Settings(), "localhost:8000", ("Origin: null",), 403),
        (Settings(), "localhost:8000", ("Origin: http://localhost.:8000",), 101),
        (Settings(), "127.0.0.1:8000", ("Origin: http://localhost:5173",), 101),
        (Settings(), "localhost:8000", (), 101),
        (
            Settings(tokens=parse_token_map(TOKENS), allowed_hosts=("api.example.org",)),
            "api.example.org",
            ("Origin: https://api.example.org",),
            101,
        ),
        (
            Settings(tokens=parse_token_map(TOKENS), ws_origins=("https://portal.example.org",)),
            "api.example.org",
            ("Origin: https://portal.example.org",),
            101,
        ),
    ],
)
async def test_a_websocket_origin_is_held_to_the_allow_list_not_to_host(
    slurm_cluster: str, settings: Settings, host: str, headers: tuple[str, ...], status: int
) -> None:
    """A browser's upgrade is refused (403) unless its origin's host is allowed or the origin is
    listed, whatever the Host and Sec-Fetch-Site headers say; clients without Origin pass."""
    transport = CountingTransport(LocalTransport())
    async with serving(create_app(settings, transports={"local": transport})) as url:
        got, body = await answer(url, upgrade(host, *headers))
    assert got == status, body
    if status == 403:
        assert "ORIGIN_NOT_ALLOWED" in body
    assert transport.calls == 0
