"""Request bodies over SLURM_GRAPHQL_MAX_BODY_BYTES get 413 REQUEST_TOO_LARGE, and run nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from server.settings import Settings, SettingsError
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport

LIMIT = 2048


def _padded_query(size: int) -> bytes:
    """A valid query document padded with a comment to `size` bytes of JSON."""
    body = {"query": "{ clusters { name } }\n#"}
    raw = json.dumps(body).encode()
    body["query"] += "x" * (size - len(raw))
    return json.dumps(body).encode()


async def test_a_declared_length_over_the_limit_is_refused() -> None:
    """A Content-Length over the cap: 413 with the code, and no transport call."""
    counting = CountingTransport(LocalTransport())
    async with app_client(Settings(max_body_bytes=LIMIT), {"local": counting}) as client:
        response = await client.post(
            "/graphql",
            content=_padded_query(LIMIT + 1),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert counting.calls == 0


async def test_a_chunked_body_over_the_limit_is_refused() -> None:
    """Without a Content-Length, bytes are counted as they stream; past the cap: 413."""
    counting = CountingTransport(LocalTransport())
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        payload = _padded_query(LIMIT * 4)
        for start in range(0, len(payload), 512):
            chunks_sent += 1
            yield payload[start : start + 512]

    async with app_client(Settings(max_body_bytes=LIMIT), {"local": counting}) as client:
        response = await client.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert counting.calls == 0


async def test_a_body_at_the_limit_is_served() -> None:
    """Exactly the cap is allowed: the query is parsed and answered (no command needed)."""
    async with app_client(Settings(max_body_bytes=LIMIT)) as client:
        body = _padded_query(LIMIT)
        assert len(body) == LIMIT
        response = await client.post(
            "/graphql",
            content=body.replace(b"{ clusters { name } }", b"{ __typename        }"),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


def test_the_limit_is_read_from_the_environment() -> None:
    """Default 1 MiB; a number sets it; a non-number names the variable."""
    assert Settings.from_environ({}).max_body_bytes == 1024 * 1024
    assert Settings.from_environ({"SLURM_GRAPHQL_MAX_BODY_BYTES": "4096"}).max_body_bytes == 4096
    with pytest.raises(SettingsError, match="SLURM_GRAPHQL_MAX_BODY_BYTES"):
        Settings.from_environ({"SLURM_GRAPHQL_MAX_BODY_BYTES": "lots"})
