"""SLURM_GRAPHQL_AUTH=apigateway: the identity comes from the claims API Gateway's authorizer put
in the Lambda event (HTTP API JWT authorizer, REST API Cognito authorizer), nowhere else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from server.lambda_app import make_handler
from server.settings import Settings
from tests.support.counting import CountingTransport
from tests.support.lambda_events import LambdaRuntime, graphql_post, response_body
from transport.local import LocalTransport

VIEWER = "{ viewer { user admin } }"
ENVIRON = {
    "SLURM_GRAPHQL_AUTH": "apigateway",
    "SLURM_GRAPHQL_JWT_USER_CLAIM": "cognito:username",
    "SLURM_GRAPHQL_JWT_ADMIN_GROUP": "hpc-admins",
}


@pytest.fixture
def runtime() -> Iterator[tuple[LambdaRuntime, CountingTransport]]:
    transport = CountingTransport(LocalTransport())
    settings = Settings.from_environ(ENVIRON)
    runtime = LambdaRuntime(lambda: make_handler(settings, {"local": transport}))
    try:
        yield runtime, transport
    finally:
        runtime.close()


def with_claims(kind: str, claims: dict[str, Any] | None) -> dict[str, Any]:
    event = graphql_post(kind, VIEWER)
    if claims is not None:
        authorizer = {"jwt": {"claims": claims}} if kind == "http" else {"claims": claims}
        event["requestContext"]["authorizer"] = authorizer
    return event


@pytest.mark.parametrize("kind", ["http", "rest"])
def test_claims_from_the_authorizer_name_the_user(
    kind: str, runtime: tuple[LambdaRuntime, CountingTransport]
) -> None:
    """alice from cognito:username; carol an admin by her group, as API Gateway flattens it."""
    lam, _ = runtime
    seen = []
    for claims in (
        {"cognito:username": "alice"},
        {"cognito:username": "carol", "cognito:groups": "[users hpc-admins]"},
    ):
        response = lam.invoke(with_claims(kind, claims))
        assert response["statusCode"] == 200, response
        seen.append(json.loads(response_body(response))["data"]["viewer"])
    assert seen == [{"user": "alice", "admin": False}, {"user": "carol", "admin": True}]


@pytest.mark.parametrize("kind", ["http", "rest", "alb"])
def test_without_authorizer_claims_nothing_runs(
    kind: str, runtime: tuple[LambdaRuntime, CountingTransport]
) -> None:
    """No authorizer, or claims without a valid user: 401, whatever bearer token is sent."""
    lam, transport = runtime
    for claims in (None, {"sub": "x"}, {"cognito:username": "Robert'); DROP"}):
        event = with_claims(kind if claims is None else "http", claims)
        event.setdefault("headers", {})["authorization"] = "Bearer alice-token"
        response = lam.invoke(event)
        assert response["statusCode"] == 401, response
    assert transport.calls == 0
