"""The Lambda handler: it will not start without an explicit authentication mode, and API
Gateway's authorizer cannot make it act as root or a system account."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from server.lambda_app import handler_from_environ, make_handler
from server.settings import Settings, SettingsError
from tests.support.audit import audit_lines
from tests.support.counting import CountingTransport
from tests.support.lambda_events import LambdaRuntime, graphql_post, response_body
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

SUBMIT = 'mutation { submitJob(input: {script: "#!/bin/sh\\ntrue\\n", hold: true}) { __typename } }'
APIGATEWAY = {
    "SLURM_GRAPHQL_AUTH": "apigateway",
    "SLURM_GRAPHQL_JWT_USER_CLAIM": "cognito:username",
    "SLURM_GRAPHQL_JWT_ADMIN_GROUP": "hpc-admins",
}


@pytest.mark.parametrize("auth", [None, "", "none", "NONE"])
def test_the_handler_refuses_to_start_without_an_auth_mode(auth: str | None) -> None:
    """No SLURM_GRAPHQL_AUTH, or anonymous mode: SettingsError at import, before any transport
    is opened, whatever else is configured (a token map alone is not enough either)."""
    environ = {"SLURM_GRAPHQL_CLUSTERS": "hpc=local://"}
    if auth is not None:
        environ["SLURM_GRAPHQL_AUTH"] = auth
    with pytest.raises(SettingsError, match="explicit authentication mode"):
        handler_from_environ(environ)
    with pytest.raises(SettingsError, match="explicit authentication mode"):
        handler_from_environ({**environ, "SLURM_GRAPHQL_TOKENS": "lambda-token=alice"})


@pytest.fixture
def runtime(slurm_cluster: str) -> Iterator[tuple[LambdaRuntime, CountingTransport]]:
    transport = CountingTransport(LocalTransport())
    settings = Settings.from_environ(APIGATEWAY)
    runtime = LambdaRuntime(lambda: make_handler(settings, {"local": transport}))
    try:
        yield runtime, transport
    finally:
        runtime.close()


@pytest.mark.parametrize("kind", ["http", "rest"])
@pytest.mark.parametrize("claimed", ["root", "daemon", "bin"])
def test_authorizer_claims_of_root_are_refused_and_audited(
    kind: str, claimed: str, runtime: tuple[LambdaRuntime, CountingTransport]
) -> None:
    """Claims naming root or a system account (even in the admin group) get 403
    PERMISSION_DENIED, nothing runs, and the audit log names the claimed user."""
    lam, transport = runtime
    claims = {"cognito:username": claimed, "cognito:groups": "[hpc-admins]"}
    event = graphql_post(kind, SUBMIT)
    event["requestContext"]["authorizer"] = (
        {"jwt": {"claims": claims}} if kind == "http" else {"claims": claims}
    )
    with audit_lines() as lines:
        response = lam.invoke(event)
    assert response["statusCode"] == 403, response
    [error] = json.loads(response_body(response))["errors"]
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    assert transport.calls == 0
    assert [(line["identity"], line["outcome"]) for line in lines] == [
        (claimed, "PERMISSION_DENIED")
    ]
