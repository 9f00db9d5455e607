"""Idempotent submission: a clientMutationId retried creates no second job, whatever happened
to the first call, because the key lives with the job in Slurm."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from typing import Any

import httpx
import pytest

from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS, UserApi
from tests.server.test_mutations import SUBMIT, scancel
from tests.support.app import app_client
from tests.support.server import running_server
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

HELD = {"script": "#!/bin/sh\nsleep 30\n", "hold": True, "partition": "batch"}


def jobs_with_key(user: str, key: str) -> list[str]:
    """Ids of `user`'s jobs whose comment carries `key`, as Slurm lists them."""
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--user={user}", "--format=%i %k"],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    ).stdout
    marker = f"slurm-graphql:cmid={key};"
    return [line.split(" ", 1)[0] for line in out.splitlines() if f" {marker}" in line]


def new_key() -> str:
    return "key-" + secrets.token_hex(8)


async def test_a_retry_returns_the_first_job(user_api: UserApi) -> None:
    """The second call with the same key returns the first call's job, created: false."""
    key = new_key()
    first = (await user_api.as_user("alice", SUBMIT, input={**HELD, "clientMutationId": key}))[
        "data"
    ]["submitJob"]
    try:
        before = user_api.transport.calls
        again = (await user_api.as_user("alice", SUBMIT, input={**HELD, "clientMutationId": key}))[
            "data"
        ]["submitJob"]
        assert user_api.transport.calls - before == 1
        assert (first["created"], again["created"]) == (True, False)
        assert again["job"]["jobId"] == first["job"]["jobId"]
        assert again["job"]["clientMutationId"] == key == again["clientMutationId"]
        assert jobs_with_key("alice", key) == [str(first["job"]["jobId"])]
        other = (await user_api.as_user("bob", SUBMIT, input={**HELD, "clientMutationId": key}))[
            "data"
        ]["submitJob"]
        scancel(other["job"]["jobId"])
        assert other["created"] is True, "keys belong to one user: bob's is another job"
    finally:
        scancel(first["job"]["jobId"])


async def test_concurrent_retries_create_one_job(unix_users: None) -> None:
    """Eight simultaneous calls with one key create exactly one job, and all report it."""
    key = new_key()
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS))
    async with app_client(settings, {"local": LocalTransport()}) as client:

        async def call() -> dict[str, Any]:
            response = await client.post(
                "/graphql",
                json={"query": SUBMIT, "variables": {"input": {**HELD, "clientMutationId": key}}},
                headers={"Authorization": "Bearer alice-token"},
            )
            payload: dict[str, Any] = response.json()["data"]["submitJob"]
            return payload

        answers = await asyncio.gather(*(call() for _ in range(8)))
    ids = {answer["job"]["jobId"] for answer in answers}
    try:
        assert len(ids) == 1
        assert sum(answer["created"] for answer in answers) == 1
        assert jobs_with_key("alice", key) == [str(ids.pop())]
    finally:
        for answer in answers:
            scancel(answer["job"]["jobId"])


def test_retry_after_a_client_timeout_and_a_server_restart(unix_users: None) -> None:
    """A client that gave up before the answer, then retried against a restarted server, gets
    the job its first call created, and Slurm holds one job with the key."""
    key = new_key()
    request = {"query": SUBMIT, "variables": {"input": {**HELD, "clientMutationId": key}}}
    headers = {"Authorization": "Bearer alice-token"}
    environ = {"SLURM_GRAPHQL_TOKENS": TOKENS}
    with running_server(environ) as base_url:
        # The request reaches the server, which goes on submitting after the client leaves.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base_url}/graphql", json=request, headers=headers, timeout=0.001)
        for _ in range(100):
            if jobs_with_key("alice", key):
                break
            time.sleep(0.1)
    created = jobs_with_key("alice", key)
    try:
        assert len(created) == 1, "the first call submitted while the client was gone"
        with running_server(environ) as base_url:
            retry = httpx.post(f"{base_url}/graphql", json=request, headers=headers, timeout=30)
        payload = retry.json()["data"]["submitJob"]
        assert payload["created"] is False
        assert str(payload["job"]["jobId"]) == created[0]
        assert jobs_with_key("alice", key) == created
    finally:
        for job_id in created:
            scancel(job_id)
