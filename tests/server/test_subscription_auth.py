"""WebSocket subscriptions authenticate with the token map, from connection_init or headers."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.scenario import Scenario
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, Connection, serving

pytestmark = pytest.mark.cluster

QUERY = "subscription($id: String!) { jobStateChanged(id: $id) { kind job { user state } } }"


def settings() -> Settings:
    return Settings(poll_interval=0.3, tokens=parse_token_map(TOKENS))


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_token_in_connection_init_opens_subscriptions(
    protocol: str, scenario: Scenario
) -> None:
    """With the token in the connection_init payload, alice's subscription runs."""
    payload = {"Authorization": "Bearer alice-token"}
    async with (
        serving(create_app(settings())) as url,
        Connection.open(url, protocol, payload) as connection,
    ):
        subscription = await connection.subscribe(QUERY, id=scenario.held)
        first = await subscription.next(10)
    assert first.kind == "next", first
    assert first.payload["data"]["jobStateChanged"]["kind"] == "SNAPSHOT"


@pytest.mark.parametrize("payload", [{}, {"Authorization": "Bearer wrong"}, {"token": "x"}])
async def test_without_a_known_token_the_connection_is_refused(
    payload: dict[str, str], slurm_cluster: str
) -> None:
    """No token, or an unknown one: the server closes the socket with 4403 before any ack."""
    async with serving(create_app(settings())) as url:
        socket_url = url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(socket_url, subprotocols=[TRANSPORT_WS]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_token_in_the_upgrade_header_is_enough(scenario: Scenario) -> None:
    """A client that can set headers (not a browser) may authenticate the upgrade itself."""
    async with serving(create_app(settings())) as url:
        socket_url = url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(
            socket_url,
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
            additional_headers={"Authorization": "Bearer bob-token"},
        ) as socket:
            await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
            ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert ack["type"] == "connection_ack"
