"""The audit trail cannot be made to lie about which request did what (issue 19, item 7).

Request ids are the server's own (32 hex digits) or, under Lambda, API Gateway's: a caller's
`X-Request-Id` is kept apart as `client_request_id`, sanitised. Every WebSocket operation (both
protocols) and every streamed (SSE) operation has an id and a request line of its own, and a
mutation sent over a WebSocket is audited with its operation's id. Values written to text logs
cannot start a line of their own. All against the real cluster and a real uvicorn.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import websockets

from server.app import create_app
from server.lambda_app import make_handler
from server.logs import ROOT, configure_logging
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.audit import audit_lines, logged
from tests.support.lambda_events import (
    ALB_HOST,
    HOST,
    KINDS,
    LambdaRuntime,
    graphql_post,
    response_headers,
)
from tests.support.oidc import Issuer, oidc_issuer
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, Connection, Subscription, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

OURS = re.compile(r"^[0-9a-f]{32}$")
# A job id no cluster here will reach: the mutation is refused by Slurm, and audited all the same.
MISSING_JOB = "99999999"
CANCEL = """mutation Cancel($id: String!) { cancelJob(id: $id) {
  __typename ... on JobActionRejected { code } } }"""
FORGED = "forged-0001"


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


@pytest.fixture
async def served(unix_users: None) -> AsyncIterator[str]:
    """The API with the test token map under uvicorn; yields its URL."""
    settings = Settings(cache_ttl=0, tokens=parse_token_map(TOKENS), poll_interval=60)
    async with serving(create_app(settings, {"local": LocalTransport()})) as url:
        yield url


async def test_a_forged_request_id_is_not_the_audit_id(served: str) -> None:
    """A mutation sent with X-Request-Id is audited and logged under the server's own id (the
    one the response echoes); the caller's is only `client_request_id`, unsafe bytes replaced."""
    with audit_lines() as audit, logged("slurm_graphql.request") as requests:
        async with httpx.AsyncClient(base_url=served) as client:
            response = await client.post(
                "/graphql",
                json={"query": CANCEL, "variables": {"id": MISSING_JOB}},
                headers={**auth("alice"), "X-Request-Id": FORGED + " x"},
            )
    assert response.status_code == 200, response.text
    ours = response.headers["x-request-id"]
    assert OURS.match(ours)
    [line] = audit
    assert (line["operation"], line["identity"]) == ("cancelJob", "alice")
    assert line["request_id"] == ours and line["client_request_id"] == FORGED + "_x"
    [request] = [r for r in requests if r.get("path") == "/graphql"]
    assert request["request_id"] == ours and request["client_request_id"] == FORGED + "_x"


async def test_an_anonymous_caller_cannot_choose_its_audit_id(slurm_cluster: str) -> None:
    """Anonymous mode: the refused mutation's audit line carries the server's id, not the one
    the anonymous caller sent."""
    with audit_lines() as audit:
        async with (
            serving(create_app(Settings(cache_ttl=0))) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            response = await client.post(
                "/graphql",
                json={"query": CANCEL, "variables": {"id": MISSING_JOB}},
                headers={"X-Request-Id": FORGED},
            )
    [line] = audit
    assert line["outcome"] == "UNAUTHENTICATED"
    assert line["request_id"] == response.headers["x-request-id"] != FORGED
    assert line["client_request_id"] == FORGED


async def test_websocket_mutations_are_audited_with_ids_of_their_own(served: str) -> None:
    """Two mutations on one socket (graphql-transport-ws; the legacy protocol runs no
    mutations): each is audited with its own server id, which is also on its own request line
    (method WS, its protocol and operation, the socket's id)."""
    with audit_lines() as audit, logged("slurm_graphql.request") as requests:
        async with Connection.open(
            served, payload=auth("alice"), additional_headers={"X-Request-Id": FORGED}
        ) as connection:
            upgrade = connection.socket.response
            assert upgrade is not None
            connection_id = upgrade.headers["x-request-id"]
            for _ in range(2):
                operation = await connection.subscribe(CANCEL, id=MISSING_JOB)
                messages = await operation.until_complete()
                assert messages[0].kind == "next", messages
    assert OURS.match(connection_id)
    ids = [line["request_id"] for line in audit]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(OURS.match(i) and i != connection_id for i in ids)
    assert all(line["client_request_id"] == FORGED for line in audit)
    lines = {r["request_id"]: r for r in requests if r.get("method") == "WS"}
    assert set(lines) == set(ids)
    for request_id in ids:
        line = lines[request_id]
        assert (line["operation"], line["operation_type"]) == ("Cancel", "mutation")
        assert (line["protocol"], line["connection_id"]) == (TRANSPORT_WS, connection_id)
        assert line["outcome"] == "ok" and line["status"] is None
        assert line["transport_calls"] >= 1
    [socket_line] = [r for r in requests if r.get("method") == "WEBSOCKET"]
    assert socket_line["request_id"] == connection_id


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_every_websocket_operation_has_an_id_and_a_line(served: str, protocol: str) -> None:
    """Each operation on a socket, in either protocol, logs one line with an id of its own and
    its outcome: `error` for one that fails validation, and a subscription its line when the
    client stops it."""
    with logged("slurm_graphql.request") as requests:
        async with Connection.open(served, protocol, payload=auth("bob")) as connection:
            bad = await connection.subscribe("subscription Bad { noSuchField }")
            await bad.until_complete()
            good = await connection.subscribe("subscription Good { nodeEvents { kind } }")
            await asyncio.sleep(0.3)
            await good.stop()
            for _ in range(100):  # the server logs the operation once its task has ended
                if len([r for r in requests if r.get("method") == "WS"]) == 2:
                    break
                await asyncio.sleep(0.05)
    lines = [r for r in requests if r.get("method") == "WS"]
    outcomes = {r["operation"]: r["outcome"] for r in lines}
    assert outcomes["Bad"] == "error" and outcomes["Good"] in ("ok", "stopped"), outcomes
    assert all(r["operation_type"] == "subscription" for r in lines)
    assert all(OURS.match(r["request_id"]) and r["protocol"] == protocol for r in lines)
    assert len({r["request_id"] for r in lines}) == 2


async def test_server_sent_events_log_their_operation(served: str) -> None:
    """A mutation streamed over SSE is audited under the id its response carries, and its line
    says which operation it ran, over which protocol, and how it went."""
    headers = {**auth("carol"), "Accept": "text/event-stream", "X-Request-Id": FORGED}
    body = {"query": CANCEL, "variables": {"id": MISSING_JOB}}
    with audit_lines() as audit, logged("slurm_graphql.request") as requests:
        async with (
            httpx.AsyncClient(base_url=served, timeout=10) as client,
            client.stream("POST", "/graphql", json=body, headers=headers) as stream,
        ):
            assert stream.status_code == 200
            events = [line async for line in stream.aiter_lines() if line.startswith("data")]
            request_id = stream.headers["x-request-id"]
    assert events
    assert OURS.match(request_id)
    [line] = audit
    assert line["request_id"] == request_id and line["client_request_id"] == FORGED
    [request] = [r for r in requests if r.get("request_id") == request_id]
    assert (request["operation"], request["operation_type"]) == ("Cancel", "mutation")
    assert request["protocol"] == "sse" and request["outcome"] == "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_ids_are_api_gateways_not_the_callers(unix_users: None, kind: str) -> None:
    """Under Lambda a forged X-Request-Id is kept apart: the audit line, the request line and
    the response carry API Gateway's request id (a fresh one behind an ALB, which has none)."""
    settings = Settings(cache_ttl=0, tokens=parse_token_map(TOKENS), allowed_hosts=(HOST, ALB_HOST))
    runtime = LambdaRuntime(lambda: make_handler(settings, {"local": LocalTransport()}))
    event = graphql_post(
        kind,
        CANCEL,
        variables={"id": MISSING_JOB},
        headers={**auth("alice"), "X-Request-Id": FORGED},
    )
    try:
        with audit_lines() as audit, logged("slurm_graphql.request") as requests:
            response = runtime.invoke(event)
    finally:
        runtime.close()
    header_id = response_headers(response)["x-request-id"]
    if kind == "alb":
        assert OURS.match(header_id)
    else:
        assert header_id == event["requestContext"]["requestId"]
    [line] = audit
    assert line["request_id"] == header_id and line["client_request_id"] == FORGED
    [request] = requests
    assert request["request_id"] == header_id and request["client_request_id"] == FORGED


def test_a_claimed_name_cannot_forge_an_audit_line() -> None:
    """A name with a newline (from a token's claims) in a text log stays on its line, escaped,
    and so do control characters; JSON lines are one line each as well."""
    # Imported here, like loggable below, so that the other tests run against older code too.
    from resolvers.audit import audit_refusal
    from resolvers.context import RequestIds

    logger = logging.getLogger(ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    forged = "root\nINFO slurm_graphql.audit audit request_id=x identity=root outcome=done\x1b[2K"
    try:
        for log_format in ("text", "json"):
            stream = io.StringIO()
            configure_logging(log_format, "info", stream)
            audit_refusal(RequestIds("a" * 32, "c\nd"), forged, "unknown user", "DENIED")
            [line] = stream.getvalue().splitlines()
            assert "\x1b" not in line
            if log_format == "json":
                assert json.loads(line)["identity"] == forged
            else:
                assert "identity=root\\nINFO" in line
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def test_loggable_escapes_what_could_break_a_line() -> None:
    """Newlines, carriage returns, escapes, C1 controls and Unicode line separators are shown
    as escapes; a backslash is doubled so escapes stay unambiguous; long values are cut."""
    from resolvers.log_values import loggable

    assert loggable("a\nb\rc\x1b[31m\x85\u2028\\n") == "a\\nb\\rc\\x1b[31m\\x85\\u2028\\\\n"
    assert loggable("job name é ü") == "job name é ü"
    assert loggable("x" * 2000) == "x" * 1000 + "…"


async def test_a_refused_websocket_operation_is_logged_unparsed(unix_users: None) -> None:
    """An operation the rate limit refuses logs its line (outcome `refused`, its own id, the
    name the client gave) without its document being parsed: refusals cost no parse."""
    settings = Settings(tokens=parse_token_map(TOKENS), rate_limit=0.1, rate_burst=1)
    message = {
        "type": "subscribe",
        "payload": {"query": "query Named { clusters { name } }", "operationName": "Named"},
    }
    with logged("slurm_graphql.request") as requests:
        async with (
            serving(create_app(settings, {"local": LocalTransport()})) as url,
            Connection.open(url, payload=auth("bob")) as connection,
        ):
            for operation_id in ("1", "2"):
                connection._inboxes[operation_id] = asyncio.Queue()
                await connection.socket.send(json.dumps({**message, "id": operation_id}))
            ran = await Subscription(connection, "1").until_complete()
            [refused] = await Subscription(connection, "2").until_complete()
    assert ran[0].kind == "next" and refused.kind == "error"
    lines = {r["outcome"]: r for r in requests if r.get("method") == "WS"}
    assert set(lines) == {"ok", "refused"}
    assert (lines["ok"]["operation"], lines["ok"]["operation_type"]) == ("Named", "query")
    assert (lines["refused"]["operation"], lines["refused"]["operation_type"]) == ("Named", None)
    assert lines["ok"]["request_id"] != lines["refused"]["request_id"]


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with oidc_issuer() as made:
        yield made


async def test_websocket_refusals_are_audited_with_the_sockets_id(
    issuer: Issuer, unix_users: None
) -> None:
    """A root claim refused in connection_init, or in the upgrade's own header (403), is audited
    with the socket's own id, the one its upgrade answer carries; never an empty id, never the
    caller's."""
    settings = Settings.from_environ(issuer.environ(SLURM_GRAPHQL_JWT_USER_CLAIM="username"))
    token = issuer.token(username="root")
    forged = {"X-Request-Id": FORGED}
    with audit_lines() as audit:
        async with serving(create_app(settings)) as url:
            socket_url = url.replace("http://", "ws://") + "/graphql"
            async with websockets.connect(
                socket_url,
                subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
                additional_headers=forged,
            ) as socket:
                assert socket.response is not None
                accepted_id = socket.response.headers["x-request-id"]
                init = {"Authorization": f"Bearer {token}"}
                await socket.send(json.dumps({"type": "connection_init", "payload": init}))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(socket.recv(), 10)
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(
                    socket_url,
                    subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
                    additional_headers={**forged, "Authorization": f"Bearer {token}"},
                ):
                    pass
    refused_id = refused.value.response.headers["x-request-id"]
    assert OURS.match(accepted_id) and OURS.match(refused_id) and accepted_id != refused_id
    assert [(line["outcome"], line["request_id"]) for line in audit] == [
        ("PERMISSION_DENIED", accepted_id),
        ("PERMISSION_DENIED", refused_id),
    ]
    assert all(line["client_request_id"] == FORGED for line in audit)
