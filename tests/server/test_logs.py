"""One log line per request, JSON or text, carrying the server's request id the response echoes
(and, apart, the caller's); every logger of the service under `slurm_graphql`, and every line a
served process writes in the configured format."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.logs import ROOT, configure_logging
from server.packages import OWN_PACKAGES
from server.settings import Settings
from tests.support.app import app_client
from tests.support.audit import logged
from tests.support.counting import CountingTransport
from tests.support.server import REPO, free_port
from tests.support.ws import LEGACY_WS, Connection, serving
from transport.local import LocalTransport

SERVICE_PACKAGES = tuple(OWN_PACKAGES)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The project's logger (and the root logger) writing to a buffer, put back as they were
    afterwards."""
    loggers = (logging.getLogger(ROOT), logging.getLogger())
    saved = [(list(x.handlers), x.level, x.propagate) for x in loggers]
    stream = io.StringIO()
    try:
        yield stream
    finally:
        logging.captureWarnings(False)
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


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


def _raise_and_log(logger: logging.Logger) -> None:
    try:
        raise RuntimeError("the cluster\nINFO slurm_graphql.audit forged")
    except RuntimeError:
        logger.exception("poll of %s failed", "hpc\nINFO slurm_graphql.audit forged")


def test_json_keeps_a_traceback_inside_its_line(log_output: io.StringIO) -> None:
    """A record with a traceback is one JSON line; the traceback is its `error`."""
    configure_logging("json", "info", log_output)
    _raise_and_log(logging.getLogger("slurm_graphql.poller"))
    [line] = json_lines(log_output)
    assert line["message"] == "poll of hpc\nINFO slurm_graphql.audit forged failed"
    assert line["error"].startswith("Traceback") and "RuntimeError" in line["error"]


def test_text_indents_a_traceback_and_escapes_the_message(log_output: io.StringIO) -> None:
    """In text, the record's own line holds the escaped message; the traceback's lines follow,
    each indented, so none of them reads as a record of its own."""
    configure_logging("text", "info", log_output)
    _raise_and_log(logging.getLogger("slurm_graphql.poller"))
    first, *rest = log_output.getvalue().splitlines()
    assert (
        first == "ERROR slurm_graphql.poller poll of hpc\\nINFO slurm_graphql.audit forged failed"
    )
    assert rest[0] == "    Traceback (most recent call last):"
    assert rest and all(line.startswith("    ") for line in rest)


def test_the_whole_process_logs_in_the_configured_format(log_output: io.StringIO) -> None:
    """With whole_process, a library's logger and Python warnings come out as JSON lines too,
    and the service's lines are written once."""
    configure_logging("json", "info", log_output, whole_process=True)
    # A logger of no level of its own (in-process tests leave uvicorn's at warning).
    logging.getLogger("a.library").info("Started")
    logging.getLogger("slurm_graphql.serve").info("GraphiQL: …")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated", UserWarning, stacklevel=1)
    lines = json_lines(log_output)
    assert [line["logger"] for line in lines] == [
        "a.library",
        "slurm_graphql.serve",
        "py.warnings",
    ]


def _logger_names(path: Path) -> list[tuple[int, str | None]]:
    """(line, name) of each logging.getLogger call in `path`; name None unless a literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "getLogger"
        ):
            argument = node.args[0] if node.args else None
            literal = isinstance(argument, ast.Constant) and isinstance(argument.value, str)
            found.append((node.lineno, argument.value if literal else None))  # type: ignore[union-attr]  # literal checked
    return found


def test_every_logger_is_under_the_service_namespace() -> None:
    """Every getLogger of the service names a literal under `slurm_graphql` (never __name__,
    which would put it outside the configured logger, its lines in another format)."""
    wrong = []
    seen = 0
    for package in SERVICE_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for line, name in _logger_names(path):
                if path.name == "logs.py" and package == "server":
                    continue  # configure_logging itself reaches ROOT and the root logger
                seen += 1
                if name is None or not (name == ROOT or name.startswith(ROOT + ".")):
                    wrong.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not wrong, wrong
    assert seen >= 6  # the scan finds the loggers it is meant to check


# A squeue that frames its one row as asked but prints the job id "²", which no parser reads
# as a number: the poll fails (a warning), and a query fails with an internal error, masked for
# the client and logged with its traceback. (Real Slurm prints no such id.)
IMPOSTOR_SQUEUE = """#!/usr/bin/env python3
import sys
spec = next(a for a in sys.argv if a.startswith("--Format="))[len("--Format="):]
row = ""
for item in spec.split(","):
    field, _, separator = item.partition(":0")
    row += ("\u00b2" if field == "JobID" else "1") + separator
print(row)
"""


async def test_serve_writes_every_line_in_json(slurm_cluster: str, tmp_path: Path) -> None:
    """The real `slurm-graphql serve` with SLURM_GRAPHQL_LOG_FORMAT=json: uvicorn's start-up
    lines, the GraphiQL URL, request lines, a masked error's traceback (once)
    and a poll failure are all JSON, one object per line, stdout and stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(IMPOSTOR_SQUEUE)
    (bin_dir / "squeue").chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_GRAPHQL_")}
    environ |= {
        "PATH": f"{bin_dir}:{environ.get('PATH', '')}",
        "SLURM_GRAPHQL_LOG_FORMAT": "json",
        "SLURM_GRAPHQL_POLL_INTERVAL": "0.2",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # Started from a thread: a blocking call has no place on the event loop.
        process = await asyncio.to_thread(
            subprocess.Popen, argv, cwd=REPO, env=environ, stdout=stdout, stderr=stderr
        )
        try:
            await asyncio.to_thread(_wait_until_it_answers, f"{url}/healthz", process)
            await asyncio.to_thread(_get, f"{url}/graphql?query=%7Bclusters%7Bname%7D%7D")
            async with Connection.open(url) as connection:
                # Polls while it lasts; each poll fails on the broken squeue.
                await connection.subscribe("subscription { jobEvents { kind } }")
                await _until(lambda: "slurm_graphql.poller" in err.read_text())
            # The impostor's job id breaks this query too: an internal error, masked and logged.
            jobs = "%7Bcluster%7Bjobs%7BtotalCount%7D%7D%7D"
            await asyncio.to_thread(_get, f"{url}/graphql?query={jobs}")
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 20)
    lines = [line for path in (out, err) for line in path.read_text().splitlines()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    loggers = {line["logger"] for line in parsed}
    assert {"uvicorn.error", "slurm_graphql.serve", "slurm_graphql.request"} <= loggers
    assert {"slurm_graphql.poller", "slurm_graphql.errors"} <= loggers
    # Once, by us, with the request's id: strawberry's logger would repeat it without one.
    assert "strawberry.execution" not in loggers
    poll = [line for line in parsed if line["logger"] == "slurm_graphql.poller"]
    # The poller reads the impostor's row as a cluster it cannot poll (a warning, once); the
    # query's masked error carries the traceback, inside its JSON line.
    assert any("job id is not a number" in line["message"] for line in poll), poll
    masked = [line for line in parsed if line["logger"] == "slurm_graphql.errors"]
    assert any("Traceback" in line.get("error", "") for line in masked), masked


def _get(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        response.read()


def _wait_until_it_answers(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(url)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _until(condition: Any, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("query", ["query Q { clusters { name } }", "mutation M { cancelJob }"])
async def test_a_wrong_operation_type_over_graphql_ws_is_the_clients(query: str) -> None:
    """graphql-ws runs subscriptions only: a query or mutation sent over it is refused with the
    reason, not masked as an internal error, and logs no traceback (any client could send it
    again and again)."""
    with logged("slurm_graphql.errors") as ours, logged("strawberry.execution") as theirs:
        async with (
            serving(create_app(Settings())) as url,
            Connection.open(url, LEGACY_WS) as connection,
        ):
            [message] = await (await connection.subscribe(query)).until_complete()
    assert message.kind == "error"
    assert message.payload["message"] in ("queries are not allowed", "mutations are not allowed")
    assert ours == [] and theirs == []


async def test_a_document_over_the_token_cap_is_not_parsed_for_its_line(
    log_output: io.StringIO,
) -> None:
    """A document strawberry refuses for its tokens is not parsed again to name it in the log
    (a parse of ours has no cap): its line has the name the client gave, and no type."""
    configure_logging("json", "info", log_output)
    fields = " ".join(["name"] * 200)
    query = f"query Big {{ clusters {{ {fields} }} }}"
    async with app_client(Settings(max_tokens=100)) as client:
        response = await client.post("/graphql", json={"query": query, "operationName": "Big"})
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    [line] = json_lines(log_output)
    assert (line["operation"], line["operation_type"], line["outcome"]) == ("Big", None, "error")
