"""Shared fixtures: the real local Slurm cluster, the scenario on it, and the app over it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from tests.support.counting import CountingTransport
from tests.support.scenario import Scenario, create_scenario, tear_down
from transport.local import LocalTransport

REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """The real local cluster, started if it is not running and stopped only if we started it."""
    cluster_dir = os.environ.setdefault("LOCAL_CLUSTER_DIR", str(REPO / ".local-cluster"))
    # The Slurm CLI (ours and the tests') finds the cluster through SLURM_CONF.
    os.environ["SLURM_CONF"] = str(Path(cluster_dir) / "slurm.conf")
    running = subprocess.run([LOCAL_CLUSTER, "status"], capture_output=True, check=False)
    started = running.returncode != 0
    if started:
        subprocess.run([LOCAL_CLUSTER, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield os.environ["SLURM_CONF"]
    finally:
        if started:
            subprocess.run([LOCAL_CLUSTER, "stop"], check=False, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def scenario(slurm_cluster: str) -> Iterator[Scenario]:
    """One job of each kind, in the state it is there for."""
    made = Scenario()
    try:
        made = create_scenario()
        yield made
    finally:
        tear_down(made)


@dataclass
class Api:
    """An HTTP client on the ASGI app, and the transport under it (to count round trips)."""

    client: httpx.AsyncClient
    transport: CountingTransport

    async def query(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def api(slurm_cluster: str) -> AsyncIterator[Api]:
    """The app over the real cluster with the cache off, so every query asks Slurm afresh."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("local", "local://"),), cache_ttl=0.0)
    app = create_app(settings, transports={"local": transport})
    async with app.router.lifespan_context(app):
        client_transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=client_transport, base_url="http://test") as client:
            yield Api(client, transport)
