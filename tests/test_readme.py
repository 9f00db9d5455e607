"""The README's examples work as written: each is taken from README.md itself and run against a
real `slurm-graphql serve` on the local cluster, with the token map the README sets up. Only the
address (a free port instead of 8000), the job ids the examples leave to the reader ("42", "41")
and a fresh idempotency key are put in; the commands, queries and programs are the README's own
text."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.scenario import has_accounting
from tests.support.server import running_server

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in `language`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def block_with(language: str, text: str) -> str:
    (found,) = [block for block in blocks(language) if text in block]
    return found


def run_tokens() -> str:
    """The token map of the README's `... make run` line."""
    block = block_with("sh", "SLURM_GRAPHQL_TOKENS=")
    line = next(line for line in block.splitlines() if line.startswith("SLURM_GRAPHQL_TOKENS="))
    assignment = shlex.split(line)[0]
    name, _, value = assignment.partition("=")
    assert name == "SLURM_GRAPHQL_TOKENS"
    return value


@pytest.fixture(scope="module")
def server(slurm_cluster: str, unix_users: None) -> Iterator[str]:
    with running_server({"SLURM_GRAPHQL_TOKENS": run_tokens()}) as url:
        yield url


def at(server: str, text: str) -> str:
    """`text` addressed to the test's server instead of the README's port 8000."""
    port = server.rsplit(":", 1)[1]
    return text.replace("localhost:8000", f"127.0.0.1:{port}").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )


def graphql(server: str, query: str, **variables: object) -> dict[str, object]:
    response = httpx.post(
        f"{server}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": "Bearer token-alice"},
        timeout=60,
    )
    body: dict[str, object] = response.json()
    assert response.status_code == 200, body
    return body


def curl_submit(server: str) -> str:
    """The README's curl submission, run by a shell as written; the new job's id."""
    block = block_with("sh", "curl -s localhost:8000/graphql")
    command = block[block.index("curl -s") :]
    done = subprocess.run(
        ["bash", "-c", at(server, command)], capture_output=True, text=True, timeout=60, check=True
    )
    submitted = json.loads(done.stdout)["data"]["submitJob"]
    assert submitted["__typename"] == "JobSubmitted", submitted
    assert submitted["job"]["user"] == "alice"
    job_id: str = submitted["job"]["displayId"]
    return job_id


def cancel(*job_ids: str) -> None:
    subprocess.run(["scancel", *job_ids], capture_output=True, check=False, timeout=30)


def test_the_opening_query_answers_with_data(server: str) -> None:
    body = graphql(server, blocks("graphql")[0])
    assert "errors" not in body, body
    cluster = body["data"]["cluster"]  # type: ignore[index]
    assert cluster["slurmVersion"] and cluster["partitions"]


def test_the_history_and_efficiency_queries_answer_with_data(server: str) -> None:
    """The README's jobHistory queries run as written on the cluster with slurmdbd."""
    if not has_accounting():
        pytest.skip("the cluster under test has no slurmdbd (LOCAL_CLUSTER_ACCOUNTING=0)")
    for marker in ("query History", "query Efficiency"):
        body = graphql(server, block_with("graphql", marker))
        assert "errors" not in body, body
        assert isinstance(body["data"]["cluster"]["jobHistory"]["edges"], list)  # type: ignore[index]


def test_the_refetch_example_returns_what_its_ids_name(server: str) -> None:
    """The frontend section's `nodes(ids:)` query gives back each object its id names."""
    listing = graphql(server, "{ cluster { id nodes { id name } } }")
    cluster = listing["data"]["cluster"]  # type: ignore[index]
    ids = [cluster["id"], *(node["id"] for node in cluster["nodes"])]
    body = graphql(server, block_with("graphql", "query Refetch("), ids=ids)
    assert "errors" not in body, body
    found = body["data"]["nodes"]  # type: ignore[index]
    assert [node["id"] for node in found] == ids
    assert [node.get("name") for node in found[1:]] == [n["name"] for n in cluster["nodes"]]


def test_the_viewer_line_says_who_a_request_acts_as(server: str) -> None:
    query = re.search(r"`(\{ viewer \{[^`]*\})`", README)
    assert query is not None
    body = graphql(server, query.group(1))
    assert body["data"] == {"viewer": {"user": "alice", "admin": False, "authenticated": True}}


def test_the_curl_submission_and_the_submit_mutation_run_as_written(server: str) -> None:
    first = curl_submit(server)
    # A key of its own per run: the README's, sent again, rightly answers the first run's job.
    mutation = (
        block_with("graphql", "mutation Submit(")
        .replace('jobIds: ["41"]', f'jobIds: ["{first}"]')
        .replace('"3f6c2a9e-train-0001"', f'"{uuid.uuid4()}"')
    )
    body = graphql(server, mutation, script="#!/bin/sh\nhostname\n")
    try:
        assert "errors" not in body, body
        submitted = body["data"]["submitJob"]  # type: ignore[index]
        assert submitted.get("created") is True, submitted
        assert submitted["job"]["state"] in {"PENDING", "RUNNING"}
    finally:
        job = (body.get("data") or {}).get("submitJob") or {}  # type: ignore[attr-defined]
        cancel(first, *([job["job"]["displayId"].split("_")[0]] if job.get("job") else []))


def test_the_python_subscription_example_follows_a_job_to_its_end(server: str) -> None:
    job_id = curl_submit(server)
    program = at(server, block_with("python", "jobStateChanged")).replace(
        'follow("42")', f'follow("{job_id}")'
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    events = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert "'kind': 'SNAPSHOT'" in events[0], done.stdout
    assert "'state': 'COMPLETED'" in events[-1], done.stdout


def test_the_server_sent_events_example_streams_until_the_job_ends(server: str) -> None:
    job_id = curl_submit(server)
    command = at(server, block_with("sh", "text/event-stream")).replace(r"\"42\"", rf"\"{job_id}\"")
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    events = [
        json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip()
    ]
    states = [
        event["data"]["jobStateChanged"]["job"]["state"] for event in events if event.get("data")
    ]
    assert states and states[-1] == "COMPLETED", done.stdout
    assert [line for line in lines if line][-2:] == [
        "event: complete",
        "data: ",
    ]  # the stream ends when the job does


def test_one_table_lists_every_variable_the_server_reads_once() -> None:
    """The configuration reference is the README's only table of variables, and it names each
    SLURM_GRAPHQL_* variable the code reads exactly once (docs that tell the truth)."""
    read = {
        name
        for path in (Path(__file__).resolve().parent.parent / "server").glob("*.py")
        for name in re.findall(r'"(SLURM_GRAPHQL_[A-Z0-9_]*[A-Z0-9])"', path.read_text())
    }
    tables = [line for line in README.splitlines() if line.startswith("| variable |")]
    assert len(tables) == 1
    reference = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(SLURM_GRAPHQL_[A-Z0-9_]+)`", reference, flags=re.MULTILINE)
    assert sorted(rows) == sorted(set(rows)), "a variable has two rows"
    assert read - set(rows) == set(), "read by the server, missing from the reference"
    assert set(rows) - read == set(), "in the reference, read by nobody"
