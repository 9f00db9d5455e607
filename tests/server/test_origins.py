"""CORS for an allow-list of origins, and the same list (or its own) for WebSocket handshakes."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from server.app import create_app
from server.settings import Settings, SettingsError
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.ws import TRANSPORT_WS, serving
from transport.local import LocalTransport

ALLOWED = "https://portal.example.org"
OTHER = "https://evil.example.com"


def _preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }


async def test_a_preflight_from_an_allowed_origin_gets_the_headers() -> None:
    """The allowed origin is echoed back with the methods and headers a client needs."""
    async with app_client(Settings(cors_origins=(ALLOWED,))) as client:
        response = await client.options("/graphql", headers=_preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


async def test_a_preflight_from_another_origin_gets_none() -> None:
    """An origin not on the list gets no Access-Control-Allow-Origin."""
    async with app_client(Settings(cors_origins=(ALLOWED,))) as client:
        response = await client.options("/graphql", headers=_preflight(OTHER))
    assert "access-control-allow-origin" not in response.headers


async def test_an_allowed_request_exposes_the_request_id() -> None:
    """A simple request from the allowed origin may read X-Request-Id."""
    async with app_client(Settings(cors_origins=(ALLOWED,))) as client:
        response = await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": ALLOWED}
        )
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


async def test_without_origins_there_are_no_cors_headers() -> None:
    """The default: no CORS at all, whatever the request asks."""
    async with app_client(Settings()) as client:
        response = await client.options("/graphql", headers=_preflight(ALLOWED))
    assert not any(name.startswith("access-control-") for name in response.headers)


async def _handshake(url: str, origin: str) -> str:
    """connection_ack, or how the server refused the socket."""
    socket_url = url.replace("http://", "ws://") + "/graphql"
    try:
        async with websockets.connect(
            socket_url,
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
        ) as socket:
            await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
            return str(json.loads(await asyncio.wait_for(socket.recv(), 10))["type"])
    except websockets.InvalidStatus as refused:
        return f"refused {refused.response.status_code}"
    except websockets.ConnectionClosed as closed:
        return f"closed {closed.rcvd.code if closed.rcvd else None}"


@pytest.mark.parametrize(
    ("settings", "origin", "outcome"),
    [
        (Settings(cors_origins=(ALLOWED,)), ALLOWED, "connection_ack"),
        (Settings(cors_origins=(ALLOWED,)), OTHER, "refused 403"),
        (Settings(cors_origins=(ALLOWED,), ws_origins=(OTHER,)), OTHER, "connection_ack"),
        (Settings(cors_origins=(ALLOWED,), ws_origins=(OTHER,)), ALLOWED, "refused 403"),
        (Settings(), ALLOWED, "refused 403"),
    ],
)
async def test_a_websocket_from_an_origin_not_listed_is_refused(
    settings: Settings, origin: str, outcome: str
) -> None:
    """Over a real socket: the WS list (by default the CORS list) decides the handshake."""
    counting = CountingTransport(LocalTransport())
    async with serving(create_app(settings, {"local": counting})) as url:
        assert await _handshake(url, origin) == outcome
    assert counting.calls == 0


def test_origins_are_read_from_the_environment() -> None:
    """Comma-separated; the WebSocket list defaults to the CORS list; a path is refused."""
    settings = Settings.from_environ({"SLURM_GRAPHQL_CORS_ORIGINS": f"{ALLOWED}, {OTHER}"})
    assert settings.cors_origins == (ALLOWED, OTHER)
    assert settings.ws_origins is None
    assert Settings.from_environ({}).cors_origins == ()
    with pytest.raises(SettingsError, match="SLURM_GRAPHQL_WS_ORIGINS"):
        Settings.from_environ({"SLURM_GRAPHQL_WS_ORIGINS": "https://a.example/path"})
