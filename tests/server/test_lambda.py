"""The Lambda handler answers API Gateway REST, HTTP API and ALB events over the real cluster."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from server.lambda_app import SUBSCRIPTIONS_REFUSED, make_handler
from server.settings import Settings
from tests.conftest import REPO, Aws
from tests.support.counting import CountingTransport
from tests.support.lambda_events import (
    ALB_HOST,
    BROWSER_ACCEPT,
    HOST,
    KINDS,
    LambdaRuntime,
    event,
    graphql_post,
    response_body,
    response_headers,
)
from transport.local import LocalTransport

EACH_KIND = pytest.mark.parametrize("kind", KINDS)


class Lambda:
    """A handler in its runtime, over a counted real transport."""

    def __init__(self, settings: Settings) -> None:
        self.transport = CountingTransport(LocalTransport())
        self.runtime = LambdaRuntime(lambda: make_handler(settings, {"local": self.transport}))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.runtime.invoke(event)

    def graphql(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self.invoke(event)
        assert response["statusCode"] == 200, response
        assert response_headers(response)["content-type"] == "application/json"
        body: dict[str, Any] = json.loads(response_body(response))
        return body


@pytest.fixture
def lam(slurm_cluster: str) -> Iterator[Lambda]:
    """Anonymous reads (these tests are about events, not identities), under the names API
    Gateway and the ALB give the function; handler_from_environ would insist on an auth mode."""
    handler = Lambda(Settings(cache_ttl=0, allowed_hosts=(HOST, ALB_HOST)))
    try:
        yield handler
    finally:
        handler.runtime.close()


@EACH_KIND
def test_a_query_runs_against_the_cluster(lam: Lambda, kind: str) -> None:
    """A JSON POST executes, with one round trip, and the response echoes a request id."""
    response = lam.invoke(graphql_post(kind, "{ cluster { name partitions { name } } }"))
    assert response["statusCode"] == 200
    body = json.loads(response_body(response))
    assert "errors" not in body, body
    assert body["data"]["cluster"]["name"] == "local"
    assert {p["name"] for p in body["data"]["cluster"]["partitions"]} >= {"batch"}
    assert lam.transport.calls == 1
    assert response_headers(response)["x-request-id"]


@EACH_KIND
def test_a_base64_body_is_decoded(lam: Lambda, kind: str) -> None:
    """API Gateway and ALBs may deliver the body base64-encoded; it reads the same."""
    query = "query Nodes($name: String!) { cluster { node(name: $name) { name } } }"
    body = lam.graphql(graphql_post(kind, query, base64_body=True, variables={"name": "n3"}))
    assert body == {"data": {"cluster": {"node": {"name": "n3"}}}}


@EACH_KIND
def test_a_browser_gets_graphiql(lam: Lambda, kind: str) -> None:
    """GET /graphql with Accept: text/html is GraphiQL's page, and its assets load, gzipped."""
    page = lam.invoke(event(kind, "GET", "/graphql", headers={"Accept": BROWSER_ACCEPT}))
    assert page["statusCode"] == 200
    assert response_headers(page)["content-type"].startswith("text/html")
    html = response_body(page).decode()
    assert "<title>slurm-graphql</title>" in html and "/static/graphiql/graphiql.min.js" in html
    asset = lam.invoke(
        event(
            kind,
            "GET",
            "/static/graphiql/graphiql.min.js",
            headers={"Accept": "*/*", "Accept-Encoding": "gzip, deflate, br"},
        )
    )
    assert asset["statusCode"] == 200
    assert response_headers(asset)["content-encoding"] == "gzip"
    # Compressed bytes travel base64-encoded, and stay far below Lambda's 6 MB response limit.
    assert asset["isBase64Encoded"] is True and len(asset["body"]) < 2_000_000
    assert b"GraphiQL" in gzip.decompress(response_body(asset))
    assert lam.transport.calls == 0


@EACH_KIND
def test_a_get_query_runs(lam: Lambda, kind: str) -> None:
    """GET /graphql?query=… from a script (Accept: application/json) executes; an ALB's
    percent-encoded query string is read the same."""
    query = {"query": '{ cluster { node(name: "n1") { name } } }'}
    response = lam.invoke(
        event(kind, "GET", "/graphql", query=query, headers={"Accept": "application/json"})
    )
    assert response["statusCode"] == 200
    assert json.loads(response_body(response)) == {"data": {"cluster": {"node": {"name": "n1"}}}}


@EACH_KIND
def test_subscriptions_are_refused(lam: Lambda, kind: str) -> None:
    """A subscription, by POST or GET, anonymous or selected by name among other operations, is
    refused before execution with a coded error naming the container deployment, and counted."""
    document = "query Names { clusters { name } } subscription Watch { jobsChanged { id } }"
    refused = [
        lam.graphql(graphql_post(kind, "subscription { jobsChanged { id } }")),
        lam.graphql(graphql_post(kind, document, operationName="Watch")),
        lam.graphql(
            event(
                kind,
                "GET",
                "/graphql",
                query={"query": document, "operationName": "Watch"},
                headers={"Accept": "application/json"},
            )
        ),
    ]
    for body in refused:
        [error] = body["errors"]
        assert error["extensions"] == {"code": SUBSCRIPTIONS_REFUSED}
        assert "container deployment" in error["message"] and "WebSocket" in error["message"]
        assert "data" not in body
    # Without a Subscription type in the schema, a document holding one does not validate:
    # the query selected from a document of queries runs.
    two_queries = "query Names { clusters { name } } query Other { clusters { name } }"
    allowed = lam.graphql(graphql_post(kind, two_queries, operationName="Names"))
    assert allowed == {"data": {"clusters": [{"name": "local"}]}}
    assert lam.transport.calls == 0
    metrics = response_body(lam.invoke(event(kind, "GET", "/metrics"))).decode()
    assert 'slurm_graphql_requests_total{operation="Watch",outcome="refused"} 2.0' in metrics
    assert 'slurm_graphql_requests_total{operation="anonymous",outcome="refused"} 1.0' in metrics


@EACH_KIND
def test_state_outlives_each_invocations_lifespan(lam: Lambda, kind: str) -> None:
    """Mangum starts and stops the app around every event; readiness and metrics carry over,
    so a second /readyz reports the first one's probe instead of probing again."""
    lam.graphql(graphql_post(kind, "query V { cluster { slurmVersion } }"))
    for _ in range(2):
        ready = lam.invoke(event(kind, "GET", "/readyz"))
        assert ready["statusCode"] == 200
        assert json.loads(response_body(ready))["clusters"]["local"]["source"] == "probe"
    metrics = response_body(lam.invoke(event(kind, "GET", "/metrics"))).decode()
    assert 'slurm_graphql_requests_total{operation="V",outcome="ok"} 1.0' in metrics
    assert lam.transport.calls == 2  # the query, and one ping


RUN_HANDLER = """
import json, sys
import server.lambda_handler as entry
loaded = sorted(m for m in ("boto3", "botocore") if m in sys.modules)
for line in sys.stdin:
    print(json.dumps({"response": entry.handler(json.loads(line), None), "loaded": loaded}))
"""


# The entry point insists on an explicit authentication mode (tests/security/test_identity.py).
TOKEN_AUTH = {"SLURM_GRAPHQL_AUTH": "tokens", "SLURM_GRAPHQL_TOKENS": "lambda-token=alice"}
BEARER = {"Authorization": "Bearer lambda-token"}


def run_entry_point(environ: dict[str, str], *events: dict[str, Any]) -> list[dict[str, Any]]:
    """Import server.lambda_handler in a fresh interpreter, as Lambda does, and invoke it."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_HANDLER],
        input="".join(json.dumps(e) + "\n" for e in events),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **environ},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    return [{**a, "stderr": done.stderr} for a in answers]


@EACH_KIND
def test_the_entry_point_reads_the_environment(slurm_cluster: str, kind: str) -> None:
    """`server.lambda_handler.handler`, configured only by the environment, serves a query,
    logs one request line carrying API Gateway's request id, writes every line of the process
    (Mangum's included) as JSON, and never imports boto3 for local://."""
    environ = {"SLURM_GRAPHQL_CLUSTERS": "hpc=local://", "SLURM_GRAPHQL_LOG_FORMAT": "json"}
    query = "query C { cluster { name slurmVersion } }"
    [answer] = run_entry_point({**environ, **TOKEN_AUTH}, graphql_post(kind, query, headers=BEARER))
    response = answer["response"]
    assert json.loads(response_body(response))["data"]["cluster"]["name"] == "hpc"
    assert answer["loaded"] == []
    logged = [json.loads(x) for x in answer["stderr"].splitlines()]
    [line] = [x for x in logged if x["logger"] == "slurm_graphql.request"]
    assert line["operation"] == "C" and line["transport_calls"] == 1
    header_id = response_headers(response)["x-request-id"]
    assert line["request_id"] == header_id
    if kind != "alb":  # API Gateway's own id, so our line and its access log match
        assert header_id == graphql_post(kind, "")["requestContext"]["requestId"]


def test_the_entry_point_over_ssm(aws: Aws) -> None:
    """Configured with an ssm:// cluster, the handler reaches the cluster through boto3 (here
    the local SSM endpoint), opening the transport once for several invocations."""
    aws.endpoint.reset_stats()
    environ = {
        "SLURM_GRAPHQL_CLUSTERS": f"aws={aws.ssm_url()}",
        "SLURM_GRAPHQL_CACHE_TTL": "0",
        **TOKEN_AUTH,
    }
    query = graphql_post("http", "{ cluster { name nodes { name } } }", headers=BEARER)
    answers = run_entry_point(environ, query, query)
    for answer in answers:
        body = json.loads(response_body(answer["response"]))
        assert body["data"]["cluster"]["name"] == "aws"
        assert len(body["data"]["cluster"]["nodes"]) == 4
    assert answers[0]["loaded"] == ["boto3", "botocore"]
    assert aws.endpoint.stats()["SendCommand"] == 2


@EACH_KIND
def test_a_malformed_body_is_a_bad_request(lam: Lambda, kind: str) -> None:
    """A (base64) body that is not JSON gets the 400 any malformed request gets."""
    raw = base64.b64encode(b"not json")
    response = lam.invoke(
        event(
            kind,
            "POST",
            "/graphql",
            headers={"Content-Type": "application/json"},
            body=raw,
            base64_body=True,
        )
    )
    assert response["statusCode"] == 400
