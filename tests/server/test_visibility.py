"""Who sees what: SLURM_GRAPHQL_JOB_VISIBILITY=own hides other users' jobs from users (not from
admins) in queries and subscriptions; output is its owner's, admins' only when configured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.server.test_mutations import SUBMIT, scancel
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.ws import Connection, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

HELD = {"script": "#!/bin/sh\nsleep 30\n", "hold": True, "partition": "batch"}
QUICK = {"script": "#!/bin/sh\necho secret\n", "partition": "batch"}


async def call(client: httpx.AsyncClient, user: str, query: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {user}-token"},
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def jobs(unix_users: None) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """A held job of alice's and one of bob's, submitted through the API."""
    made: dict[str, dict[str, Any]] = {}
    async with app_client(
        Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS)), {"local": LocalTransport()}
    ) as client:
        for user in ("alice", "bob"):
            body = await call(client, user, SUBMIT, input=HELD)
            made[user] = body["data"]["submitJob"]["job"]
    try:
        yield made
    finally:
        for job in made.values():
            scancel(job["jobId"])


async def test_users_see_only_their_jobs_and_admins_see_all(
    jobs: dict[str, dict[str, Any]],
) -> None:
    """Under `own`, alice lists and looks up only her jobs; carol, an admin, sees both."""
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS), job_visibility="own")
    listing = "{ cluster { jobs { edges { node { jobId user } } } } }"
    lookup = "query($id: String!) { cluster { job(id: $id) { jobId } } }"
    async with app_client(settings, {"local": LocalTransport()}) as client:
        mine = await call(client, "alice", listing)
        users = {e["node"]["user"] for e in mine["data"]["cluster"]["jobs"]["edges"]}
        assert users == {"alice"}
        bobs = await call(client, "alice", lookup, id=jobs["bob"]["displayId"])
        assert bobs["data"]["cluster"]["job"] is None
        everyone = await call(client, "carol", listing)
        ids = {e["node"]["jobId"] for e in everyone["data"]["cluster"]["jobs"]["edges"]}
        assert {jobs["alice"]["jobId"], jobs["bob"]["jobId"]} <= ids


async def test_another_users_job_cannot_be_followed_under_own(
    jobs: dict[str, dict[str, Any]],
) -> None:
    """jobStateChanged on bob's job, by alice, under `own`: what an unknown id gets (one UNKNOWN
    event without a job, then the end), nothing about bob's job."""
    settings = Settings(poll_interval=0.3, tokens=parse_token_map(TOKENS), job_visibility="own")
    query = "subscription($id: String!) { jobStateChanged(id: $id) { kind job { user } } }"
    payload = {"Authorization": "Bearer alice-token"}
    async with serving(create_app(settings)) as url, Connection.open(url, payload=payload) as ws:
        theirs = await (await ws.subscribe(query, id=jobs["bob"]["displayId"])).until_complete()
        unknown = await (await ws.subscribe(query, id="999999999")).until_complete()
        mine = await ws.subscribe(query, id=jobs["alice"]["displayId"])
        first = await mine.next(10)
    answers = [[(m.kind, m.payload) for m in messages] for messages in (theirs, unknown)]
    assert answers[0] == answers[1]
    assert answers[0][0][1] == {"data": {"jobStateChanged": {"kind": "UNKNOWN", "job": None}}}
    assert first.payload["data"]["jobStateChanged"]["job"]["user"] == "alice"


async def test_output_is_the_owners_and_admins_only_when_configured(unix_users: None) -> None:
    """bob is refused alice's output by the API itself (no read is attempted); carol, an admin,
    reads it only with SLURM_GRAPHQL_ADMINS_READ_OUTPUT."""
    transport = CountingTransport(LocalTransport())
    tokens = parse_token_map(TOKENS)
    output = "query($id: String!) { cluster { job(id: $id) { state output { text } } } }"
    async with app_client(Settings(cache_ttl=0.0, tokens=tokens), {"local": transport}) as client:
        job = (await call(client, "alice", SUBMIT, input=QUICK))["data"]["submitJob"]["job"]
        try:
            for _ in range(150):
                body = await call(client, "alice", output, id=job["displayId"])
                answer = body["data"]["cluster"]["job"]
                if answer["state"] == "COMPLETED" and answer["output"] is not None:
                    break
                await asyncio.sleep(0.2)
            assert body["data"]["cluster"]["job"]["output"]["text"] == "secret\n"
            before = transport.calls
            refused = await call(client, "bob", output, id=job["displayId"])
            assert transport.calls - before == 1  # the snapshot; the file is never opened
            assert refused["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
            admin = await call(client, "carol", output, id=job["displayId"])
            assert admin["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
            allowed = Settings(cache_ttl=0.0, tokens=tokens, admins_read_output=True)
            async with app_client(allowed, {"local": LocalTransport()}) as admins:
                read = await call(admins, "carol", output, id=job["displayId"])
            assert read["data"]["cluster"]["job"]["output"]["text"] == "secret\n"
        finally:
            scancel(job["jobId"])
