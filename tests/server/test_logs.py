"""One log line per request, JSON or text, carrying the server's request id the response echoes
(and, apart, the caller's)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from server.logs import ROOT, configure_logging
from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The project's logger writing to a buffer, put back as it was afterwards."""
    logger = logging.getLogger(ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_json_line_per_request(slurm_cluster: str, log_output: io.StringIO) -> None:
    """A query logs one JSON line: the server's request id (the caller's apart), operation,
    status, duration and the round trips it cost; the response echoes the server's id."""
    configure_logging("json", "info", log_output)
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(cache_ttl=0), {"local": transport}) as client:
        response = await client.post(
            "/graphql",
            json={"query": "query Jobs { cluster { jobs { totalCount } } }"},
            headers={"X-Request-Id": "trace-0042"},
        )
    request_id = response.headers["x-request-id"]
    assert re.match(r"^[0-9a-f]{32}$", request_id)
    [line] = json_lines(log_output)
    assert line["request_id"] == request_id and line["client_request_id"] == "trace-0042"
    assert line["logger"] == "slurm_graphql.request" and line["level"] == "info"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/graphql", 200)
    assert (line["operation"], line["operation_type"], line["outcome"]) == ("Jobs", "query", "ok")
    assert line["transport_calls"] == transport.calls == 1
    assert line["duration_ms"] > 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", line["time"])


async def test_ids_are_the_servers_whatever_the_caller_sends(log_output: io.StringIO) -> None:
    """No id, or one that is too long or has spaces: a fresh id is made, echoed and logged; the
    caller's, capped and with unsafe characters replaced, is logged apart."""
    configure_logging("json", "info", log_output)
    async with app_client(Settings()) as client:
        plain = await client.post("/graphql", json={"query": "{ clusters { name } }"})
        long = await client.get(
            "/graphql?query={clusters{name}}", headers={"X-Request-Id": "x" * 200}
        )
        spaced = await client.get("/static/graphiql/VERSIONS", headers={"X-Request-Id": "a b"})
    ids = [r.headers["x-request-id"] for r in (plain, long, spaced)]
    assert all(re.match(r"^[0-9a-f]{32}$", i) for i in ids) and len(set(ids)) == 3
    assert [line["request_id"] for line in json_lines(log_output)] == ids
    sent = [line["client_request_id"] for line in json_lines(log_output)]
    assert sent == [None, "x" * 128, "a_b"]
    assert json_lines(log_output)[0]["operation"] is None  # anonymous
    assert json_lines(log_output)[0]["transport_calls"] == 0


async def test_text_lines_and_quiet_probes(log_output: io.StringIO) -> None:
    """Text format is one readable line; health checks and scrapes log only at debug level."""
    configure_logging("text", "info", log_output)
    async with app_client(Settings()) as client:
        await client.get("/healthz")
        await client.get("/metrics")
        await client.post(
            "/graphql",
            json={"query": "query Names { clusters { name } }"},
            headers={"X-Request-Id": "r1"},
        )
    [line] = log_output.getvalue().splitlines()
    assert re.match(
        r"^INFO slurm_graphql.request POST /graphql 200 [\d.]+ ms operation=Names outcome=ok "
        r"transport_calls=0 request_id=[0-9a-f]{32} client_request_id=r1$",
        line,
    ), line
