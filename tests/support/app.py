"""The ASGI app with its lifespan running, and an HTTP client on it (no server process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from server.app import create_app
from server.settings import Settings
from transport import Transport


@asynccontextmanager
async def app_client(
    settings: Settings, transports: Mapping[str, Transport] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, transports=transports)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
    ):
        yield client


async def cluster_job(client: httpx.AsyncClient, query: str, user: str, job_id: str) -> Any:
    """`query` (a `cluster { job(id: $id) {…} }` document) as `user`, whose bearer token the
    tests' settings name `<user>-token`: the job it answers (None: null), with no error."""
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"id": job_id}},
        headers={"Authorization": f"Bearer {user}-token"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["cluster"]["job"]
