"""Secure by default: with no authentication configured, every request is anonymous. It may
read, as the unprivileged SLURM_GRAPHQL_ANONYMOUS_USER, but never write nor read job output, and
never acts as the server's own user. Over local:// and ssm://, on the real cluster."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from resolvers import identity as identity_module
from resolvers.identity import Identity, InvalidUserName
from schema import build_schema
from server.app import create_app
from server.settings import Settings
from tests.conftest import open_inner_transport
from tests.support.app import app_client
from tests.support.audit import audit_lines
from tests.support.counting import CountingTransport
from tests.support.scenario import Scenario
from tests.support.ws import Connection, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

SCRIPT = "#!/bin/sh\nid -u > /tmp/anonymous-was-here\n"
# One document per mutation field of the schema, so a mutation added later is covered too.
MUTATIONS = {
    "submitJob": "mutation($n: String!, $s: String!) { submitJob(input: {script: $s, name: $n}) "
    "{ __typename } }",
    "cancelJob": "mutation($id: String!) { cancelJob(id: $id) { __typename } }",
    "holdJob": "mutation($id: String!) { holdJob(id: $id) { __typename } }",
    "releaseJob": "mutation($id: String!) { releaseJob(id: $id) { __typename } }",
    "requeueJob": "mutation($id: String!) { requeueJob(id: $id) { __typename } }",
    "updateJob": 'mutation($id: String!) { updateJob(id: $id, input: {name: "x"}) { __typename } }',
}


@dataclass
class Anonymous:
    client: httpx.AsyncClient
    transport: CountingTransport
    kind: str

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(params=["local", "ssm"])
async def anonymous(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[Anonymous]:
    """The app as it starts with no authentication settings at all, over each transport."""
    inner = open_inner_transport(request, request.param)
    transport = CountingTransport(inner)
    settings = Settings.from_environ({"SLURM_GRAPHQL_CACHE_TTL": "0"})
    assert settings.auth_mode == "none"
    try:
        async with app_client(settings, {"local": transport}) as client:
            yield Anonymous(client, transport, request.param)
    finally:
        await inner.aclose()


def jobs_named(name: str) -> list[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--all", "--name", name, "--format", "%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.split()


def test_every_mutation_of_the_schema_is_covered() -> None:
    """The refusal test below sends every mutation the schema has."""
    mutation = build_schema([])._schema.mutation_type
    assert mutation is not None
    assert set(mutation.fields) == set(MUTATIONS)


async def test_anonymous_reads_as_nobody(anonymous: Anonymous, scenario: Scenario) -> None:
    """Queries work; the viewer says the truth: nobody, not authenticated, not an admin."""
    body = await anonymous.post(
        "query($id: String!) { viewer { user admin authenticated } cluster { job(id: $id) "
        "{ displayId state } } }",
        id=scenario.held,
    )
    assert "errors" not in body, body
    assert body["data"]["viewer"] == {"user": "nobody", "admin": False, "authenticated": False}
    assert body["data"]["cluster"]["job"]["displayId"] == scenario.held


async def test_anonymous_mutations_are_unauthenticated_and_run_nothing(
    anonymous: Anonymous, scenario: Scenario
) -> None:
    """Every mutation answers UNAUTHENTICATED with no data, no command reaches the head node,
    no job is created or changed, and each refusal leaves an audit line."""
    name = f"anon-{uuid.uuid4().hex[:10]}"
    before = anonymous.transport.calls
    with audit_lines() as lines:
        for operation, document in MUTATIONS.items():
            variables = (
                {"n": name, "s": SCRIPT} if operation == "submitJob" else {"id": scenario.held}
            )
            body = await anonymous.post(document, **variables)
            assert body["data"] is None, body
            [error] = body["errors"]
            assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert anonymous.transport.calls == before
    assert jobs_named(name) == []
    state = await anonymous.post(
        "query($id: String!) { cluster { job(id: $id) { state reason } } }", id=scenario.held
    )
    assert state["data"]["cluster"]["job"]["state"] == "PENDING"
    assert [(line["operation"], line["identity"], line["outcome"]) for line in lines] == [
        (operation, "nobody", "UNAUTHENTICATED") for operation in MUTATIONS
    ]
    assert all(line["authenticated"] is False for line in lines)


async def test_anonymous_cannot_read_job_output(anonymous: Anonymous, scenario: Scenario) -> None:
    """Job.output needs an authenticated identity: UNAUTHENTICATED, and no read is sent (the one
    round trip is the snapshot)."""
    before = anonymous.transport.calls
    body = await anonymous.post(
        "query($id: String!) { cluster { job(id: $id) { displayId output { text } } } }",
        id=scenario.completed,
    )
    assert anonymous.transport.calls - before == 1
    assert body["data"]["cluster"]["job"]["displayId"] == scenario.completed
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["path"] == ["cluster", "job", "output"]


async def test_a_token_sent_to_an_anonymous_server_changes_nothing(anonymous: Anonymous) -> None:
    """Without a token map there is no token to match: a bearer header is not a way in."""
    response = await anonymous.client.post(
        "/graphql",
        json={"query": "{ viewer { user authenticated } }"},
        headers={"Authorization": "Bearer alice-token"},
    )
    assert response.json()["data"]["viewer"] == {"user": "nobody", "authenticated": False}


async def test_anonymous_websocket_reads_but_cannot_write(scenario: Scenario) -> None:
    """Over a WebSocket (no token needed in anonymous mode) a query runs as nobody, and a
    mutation sent on the same socket is UNAUTHENTICATED, with no job created."""
    name = f"anon-ws-{uuid.uuid4().hex[:10]}"
    transport = CountingTransport(LocalTransport())
    async with (
        serving(create_app(Settings(), transports={"local": transport})) as url,
        Connection.open(url) as connection,
    ):
        viewer = await connection.subscribe("{ viewer { user authenticated } }")
        [answer, done] = await viewer.until_complete()
        assert answer.payload["data"]["viewer"] == {"user": "nobody", "authenticated": False}
        before = transport.calls
        write = await connection.subscribe(MUTATIONS["submitJob"], n=name, s=SCRIPT)
        [refused, *_] = await write.until_complete()
        assert refused.payload["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert transport.calls == before
    assert done.kind == "complete"
    assert jobs_named(name) == []


def test_no_identity_stands_for_the_server_itself() -> None:
    """There is no "server's own user" identity to fall back on: a user is always a valid
    POSIX name, an anonymous identity cannot administer, and only administrators' job control
    runs with the server's rights."""
    assert not hasattr(identity_module, "SERVER_IDENTITY")
    for user in (None, "", "root\n", "../etc"):
        with pytest.raises(InvalidUserName):
            Identity(user=user)  # type: ignore[arg-type]  # what a careless caller might pass
    with pytest.raises(ValueError, match="anonymous"):
        Identity("nobody", admin=True, authenticated=False)
    anonymous = Identity.anonymous()
    assert (anonymous.user, anonymous.authenticated, anonymous.control_user()) == (
        "nobody",
        False,
        "nobody",
    )
    assert Identity("carol", admin=True).control_user() is None
    assert anonymous.cache_key != Identity("nobody").cache_key
