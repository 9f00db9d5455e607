"""The app over each transport with secrets next to it, for the head-node security tests.

Over local:// the server's environment holds SERVER_SECRETS (given to LocalTransport as the
environment it takes variables from, as `os.environ` would be in production); over ssm:// the
endpoint's (the agent's) environment holds AGENT_SECRETS (tests/conftest.py starts it so).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.support.aws import AGENT_SECRETS
from tests.support.scenario import wait_until_ended
from transport import Transport
from transport.local import LocalTransport

TOKENS = "alice-token=alice,bob-token=bob,carol-token=carol:admin"
SERVER_SECRETS = {
    "SLURM_GRAPHQL_TOKENS": "server-secret-token=root:admin",
    "SLURM_GRAPHQL_JWT_SECRET": "server-secret-jwt-key",
    "AWS_ACCESS_KEY_ID": "server-secret-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "server-secret-aws-key",
    "AWS_SESSION_TOKEN": "server-secret-session-token",
}
SECRET_VALUES = tuple(SERVER_SECRETS.values()) + tuple(AGENT_SECRETS.values())


def leaked(text: str) -> list[str]:
    """The secret values (or their distinctive parts) that appear in `text`."""
    return [value for value in SECRET_VALUES if value in text] + (
        ["a *-secret-* marker"] if "-secret-" in text else []
    )


def secret_local_transport(**options: Any) -> LocalTransport:
    """local:// on a server whose environment holds SERVER_SECRETS."""
    return LocalTransport(environ={**os.environ, **SERVER_SECRETS}, **options)


@dataclass
class App:
    client: httpx.AsyncClient
    transport: Transport
    kind: str

    async def as_user(self, user: str, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        assert response.status_code == 200, response.text
        assert "Traceback" not in response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def running_app(transport: Transport, kind: str, **settings: Any) -> AsyncIterator[App]:
    """The app over `transport` with the test token map (carol administers)."""
    configured = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS), **settings)
    app = create_app(configured, transports={"local": transport})
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
        ):
            yield App(c, transport, kind)
    finally:
        await transport.aclose()


def as_user(user: str, *argv: str, env: Mapping[str, str] | None = None) -> str:
    """Run argv on this machine as `user` (what that user could do in a shell); its stdout."""
    done = subprocess.run(
        ["runuser", "-u", user, "--", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=dict(env) if env is not None else None,
    )
    return done.stdout


def sbatch_as(user: str, *options: str, held: bool = True) -> int:
    """A job of `user` (held unless `held` is False), submitted directly with sbatch (not
    through the API)."""
    hold = ("--hold",) if held else ()
    out = as_user(user, "sbatch", "--parsable", *hold, "--partition=batch", *options, "--wrap=true")
    return int(out.strip().split(";")[0])


def ended_as(user: str, *options: str) -> int:
    """A job of `user` that has run and ended: output is read only once a job has started."""
    job_id = sbatch_as(user, *options, held=False)
    wait_until_ended([str(job_id)])
    return job_id
