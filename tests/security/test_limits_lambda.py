"""The per-user rate limit holds for Lambda events too, within one execution environment (the
deployment's API Gateway throttling bounds the rest: see README, Security)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from server.lambda_app import make_handler
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.counting import CountingTransport
from tests.support.lambda_events import (
    KINDS,
    LambdaRuntime,
    event,
    response_body,
    response_headers,
)
from transport.local import LocalTransport

QUERY = json.dumps({"query": "{ cluster { partitions { name } } }"}).encode()


def post_as(kind: str, user: str) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {user}-token"}
    return event(kind, "POST", "/graphql", headers=headers, body=QUERY)


@pytest.fixture
def runtime(
    slurm_cluster: str, unix_users: None
) -> Iterator[tuple[LambdaRuntime, CountingTransport]]:
    """A handler at 0.01 requests a second with a burst of 3, over the real cluster."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(
        tokens=parse_token_map(TOKENS), rate_limit=0.01, rate_burst=3, cache_ttl=0.0
    )
    handler = LambdaRuntime(lambda: make_handler(settings, {"local": transport}))
    try:
        yield handler, transport
    finally:
        handler.close()


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_events_of_one_user_are_rate_limited(
    kind: str, runtime: tuple[LambdaRuntime, CountingTransport]
) -> None:
    """Past the burst a user's events get 429 RATE_LIMITED with Retry-After and reach no
    cluster; another user's bucket is untouched."""
    handler, transport = runtime
    answers = [handler.invoke(post_as(kind, "alice")) for _ in range(6)]
    assert [a["statusCode"] for a in answers] == [200, 200, 200, 429, 429, 429]
    refused = answers[-1]
    assert int(response_headers(refused)["retry-after"]) >= 1
    error = json.loads(response_body(refused))["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert transport.calls == 3  # one per admitted event; the refused reached nothing
    assert handler.invoke(post_as(kind, "bob"))["statusCode"] == 200
    assert transport.calls == 4
