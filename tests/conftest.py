"""Shared fixtures: the real local Slurm cluster, the scenario on it, and the app over it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.support.aws import (
    AGENT_SECRETS,
    SsmEndpoint,
    aws_environ,
    moto_s3_server,
    s3_environ,
    ssm_endpoint,
)
from tests.support.counting import CountingTransport
from tests.support.redis_server import RedisServer
from tests.support.scenario import Scenario, create_scenario, tear_down
from transport import Transport, open_transport
from transport.local import LocalTransport

REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """The real local cluster, started if it is not running and stopped only if we started it."""
    cluster_dir = os.environ.setdefault("LOCAL_CLUSTER_DIR", str(REPO / ".local-cluster"))
    # The Slurm CLI (ours and the tests') finds the cluster through SLURM_CONF.
    os.environ["SLURM_CONF"] = str(Path(cluster_dir) / "slurm.conf")
    status = subprocess.run([LOCAL_CLUSTER, "status"], capture_output=True, text=True, check=False)
    # Ours to stop only if its slurmctld was not running. The status's exit code is not that:
    # under load its sinfo (or munge's self-test) fails for a cluster that runs, and a session
    # that took such a cluster for one it started stopped it under other sessions' tests.
    started = not controller_running(status.stdout)
    if status.returncode != 0:
        # Starts what is missing and leaves what runs as it is.
        subprocess.run([LOCAL_CLUSTER, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield os.environ["SLURM_CONF"]
    finally:
        if started:
            subprocess.run([LOCAL_CLUSTER, "stop"], check=False, stdout=subprocess.DEVNULL)


def controller_running(status: str) -> bool:
    """Whether `local-cluster status` found this cluster's slurmctld process, healthy or not."""
    return any(line.startswith("slurmctld: running") for line in status.splitlines())


@pytest.fixture
def redis_server(slurm_cluster: str) -> Iterator[RedisServer]:
    """A real redis-server of the test's own, on a free loopback port, stopped by its PID."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def scenario(slurm_cluster: str) -> Iterator[Scenario]:
    """One job of each kind, in the state it is there for."""
    made = Scenario()
    try:
        made = create_scenario()
        yield made
    finally:
        tear_down(made)


INSTANCE = "i-0123456789abcdef0"
BUCKET = "slurm-graphql-output"


@dataclass
class Aws:
    """The local SSM endpoint and moto's S3, with boto3's environment pointing at them."""

    endpoint: SsmEndpoint
    s3_url: str

    def ssm_url(self, timeout: float = 30, bucket: bool = True, target: str = INSTANCE) -> str:
        options = f"region=us-east-1&timeout={timeout:g}" + (f"&bucket={BUCKET}" if bucket else "")
        return (
            f"ssm://{target}?{options}" if target.startswith("i-") else f"ssm://?{target}&{options}"
        )


@pytest.fixture(scope="session")
def aws(slurm_cluster: str) -> Iterator[Aws]:
    """moto's S3 server and the local SSM endpoint (which runs commands against the local
    cluster, so it starts after SLURM_CONF is set), reachable through boto3's own settings."""
    with (
        moto_s3_server() as s3_url,
        ssm_endpoint(s3_url, environ={**s3_environ(s3_url), **AGENT_SECRETS}) as endpoint,
    ):
        environ = aws_environ(endpoint.url, s3_url, ec2_url=s3_url)
        saved = {name: os.environ.get(name) for name in environ}
        os.environ.update(environ)
        try:
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            s3.close()
            yield Aws(endpoint, s3_url)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def faults(aws: Aws) -> Iterator[Aws]:
    """The endpoint, with its faults cleared again after the test."""
    try:
        yield aws
    finally:
        aws.endpoint.clear_faults()


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


# Token map of the tests: alice and bob are users, carol administers the API.
TOKENS = "alice-token=alice,bob-token=bob,carol-token=carol:admin"


@pytest.fixture(scope="session")
def unix_users(slurm_cluster: str) -> None:
    """alice, bob and carol exist as Unix users, as they would on a real head node."""
    subprocess.run([REPO / "scripts" / "test-users", "ensure"], check=True)


@dataclass
class UserApi:
    """The app with the test token map, over one transport; requests act as a named user."""

    client: httpx.AsyncClient
    transport: CountingTransport
    kind: str

    async def as_user(self, user: str, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def open_inner_transport(request: pytest.FixtureRequest, kind: str) -> Transport:
    if kind == "local":
        return LocalTransport()
    aws: Aws = request.getfixturevalue("aws")
    return open_transport(aws.ssm_url())


@pytest.fixture(params=["local", "ssm"])
async def user_api(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[UserApi]:
    """The app over the real cluster with the test token map, through each transport."""
    inner = open_inner_transport(request, request.param)
    transport = CountingTransport(inner)
    settings = Settings(
        clusters=(("local", "local://"),), cache_ttl=0.0, tokens=parse_token_map(TOKENS)
    )
    app = create_app(settings, transports={"local": transport})
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://localhost"
            ) as client,
        ):
            yield UserApi(client, transport, request.param)
    finally:
        await inner.aclose()


@pytest.fixture(params=["local", "ssm", "local-stock-execution"])
async def api(request: pytest.FixtureRequest, slurm_cluster: str) -> AsyncIterator[Api]:
    """The app over the real cluster, through each transport, with the snapshot cache off so
    every query asks Slurm afresh; and once with graphql-core's own execution
    (SLURM_GRAPHQL_FAST_EXECUTION=false), so the read suite proves both executors."""
    if request.param == "ssm":
        aws: Aws = request.getfixturevalue("aws")
        inner: Transport = open_transport(aws.ssm_url())
    else:
        inner = LocalTransport()
    transport = CountingTransport(inner)
    settings = Settings(
        clusters=(("local", "local://"),),
        cache_ttl=0.0,
        fast_execution=request.param != "local-stock-execution",
    )
    app = create_app(settings, transports={"local": transport})
    try:
        async with app.router.lifespan_context(app):
            client_transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=client_transport, base_url="http://localhost"
            ) as client:
                yield Api(client, transport)
    finally:
        await inner.aclose()
