"""The Lambda handler authenticates first, then caps, then parses: an unauthenticated event costs
no decoding, no parsing and no memory, and a malformed body is a client error, never a 500."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from server.lambda_app import make_handler
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.lambda_events import LambdaRuntime, event, response_body
from transport.local import LocalTransport

MiB = 1024 * 1024
SUBSCRIPTION = "subscription { nodeEvents { kind } }"


@pytest.fixture
def runtime(slurm_cluster: str, unix_users: None) -> Iterator[LambdaRuntime]:
    """A handler with the test token map and default caps, over the real cluster."""
    settings = Settings(tokens=parse_token_map(TOKENS), cache_ttl=0.0)
    handler = LambdaRuntime(lambda: make_handler(settings, {"local": LocalTransport()}))
    try:
        yield handler
    finally:
        handler.close()


def post(body: bytes, user: str | None = None, kind: str = "http") -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = f"Bearer {user}-token"
    # Base64, as API Gateway sends a body that is not UTF-8 text.
    return event(kind, "POST", "/graphql", headers=headers, body=body, base64_body=True)


def big_document(index: int, size: int) -> bytes:
    """A JSON body whose query is one distinct string literal of `size` bytes."""
    literal = f"{index:08d}" + "x" * (size - 8)
    return json.dumps({"query": f'{{ cluster(name: "{literal}") {{ name }} }}'}).encode()


def codes(answer: dict[str, Any]) -> list[str]:
    body = json.loads(response_body(answer))
    return [e["extensions"]["code"] for e in body.get("errors") or ()]


def test_unauthenticated_big_events_cost_no_cpu(runtime: LambdaRuntime) -> None:
    """5 unauthenticated 5 MB events: 401 each, in well under a second of CPU in all (the
    handler used to decode and parse each, ~1.8 s of CPU apiece, before saying 401)."""
    runtime.invoke(post(b"{}"))  # warm: the handler's first invocation runs its lifespan
    started = time.process_time()
    answers = [runtime.invoke(post(big_document(i, 5 * MiB))) for i in range(5)]
    cpu = time.process_time() - started
    assert [a["statusCode"] for a in answers] == [401] * 5
    assert cpu < 1.0, f"{cpu:.2f} s of CPU for 5 unauthenticated events"


def test_unauthenticated_events_leave_nothing_in_memory(runtime: LambdaRuntime) -> None:
    """Memory held after 3 unauthenticated 2 MB events stays under 1 MiB (parsed documents of
    callers who never authenticated used to stay cached: ~4 MB an event)."""
    runtime.invoke(post(b"{}"))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        answers = [runtime.invoke(post(big_document(i, 2 * MiB))) for i in range(3)]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [a["statusCode"] for a in answers] == [401] * 3
    assert held < MiB, f"{held / MiB:.1f} MiB held after unauthenticated events"


@pytest.mark.parametrize("kind", ["rest", "http", "alb"])
def test_an_unauthenticated_subscription_gets_401_not_the_refusal(
    kind: str, runtime: LambdaRuntime
) -> None:
    """Authentication comes before anything reads the document: an unauthenticated
    subscription is answered 401 (it used to be parsed and refused as a subscription)."""
    body = json.dumps({"query": SUBSCRIPTION}).encode()
    anonymous = runtime.invoke(post(body, kind=kind))
    assert anonymous["statusCode"] == 401
    assert codes(anonymous) == ["UNAUTHENTICATED"]
    refused = runtime.invoke(post(body, "alice", kind=kind))
    assert refused["statusCode"] == 200
    assert codes(refused) == ["SUBSCRIPTIONS_NOT_SUPPORTED"]


def test_authenticated_events_over_the_body_cap_are_not_parsed(runtime: LambdaRuntime) -> None:
    """5 authenticated 5 MB events: 413 REQUEST_TOO_LARGE each, in under a second of CPU: the
    subscription check reads the body through the body cap, and parses nothing past it."""
    runtime.invoke(post(b"{}", "alice"))
    started = time.process_time()
    answers = [runtime.invoke(post(big_document(i, 5 * MiB), "alice")) for i in range(5)]
    cpu = time.process_time() - started
    assert [a["statusCode"] for a in answers] == [413] * 5
    assert all(codes(a) == ["REQUEST_TOO_LARGE"] for a in answers)
    assert cpu < 1.0, f"{cpu:.2f} s of CPU for 5 events over the body cap"


def test_a_document_over_the_cap_is_refused_before_parsing(runtime: LambdaRuntime) -> None:
    """A 512 KiB document (within the body cap, over the 128 KiB document cap) from an
    authenticated caller gets DOCUMENT_TOO_LARGE; a subscription that long too."""
    answer = runtime.invoke(post(big_document(1, 512 * 1024), "alice"))
    assert answer["statusCode"] == 200
    assert codes(answer) == ["DOCUMENT_TOO_LARGE"]
    padded = SUBSCRIPTION + " #" + "x" * 512 * 1024
    subscription = runtime.invoke(post(json.dumps({"query": padded}).encode(), "alice"))
    assert codes(subscription) == ["DOCUMENT_TOO_LARGE"]


MALFORMED = {
    "nested JSON": b"[" * 200_000 + b"]" * 200_000,
    "nested query JSON": b'{"query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "not UTF-8": b'{"query": "\xff\xfe"}',
    "not JSON": b"{query: {",
    "a JSON string": b'"{ cluster { name } }"',
    "a nested document": json.dumps({"query": "{ a" * 5_000 + " }" * 5_000}).encode(),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bodies_are_client_errors(name: str, runtime: LambdaRuntime) -> None:
    """Without credentials every malformed body is 401; with them, a 400 (or a coded
    GraphQL error), never a 500."""
    body = MALFORMED[name]
    assert runtime.invoke(post(body))["statusCode"] == 401
    answer = runtime.invoke(post(body, "alice"))
    assert answer["statusCode"] in (200, 400), answer
    assert codes(answer), answer
    assert "INTERNAL_SERVER_ERROR" not in codes(answer)
