"""Job.stdoutPath / stderrPath name the files the jobs really wrote, on every Slurm version.

Jobs are submitted with Slurm's own sbatch into a fresh directory; after they finish, the paths
the API gives must be exactly the files slurmstepd created there. `%N` is left out: slurmstepd
writes the machine's host name, which on the local cluster is none of its node names.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resolvers.slurm.filename import slurm_line
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.live import slurm_cli
from tests.support.scenario import sbatch
from transport import Transport
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

FIELDS = "jobId arrayTaskId stdoutPath stderrPath stdoutPattern stderrPattern"


@pytest.fixture(scope="module")
def finished(slurm_cluster: str) -> Iterator[tuple[Path, list[str]]]:
    """Jobs of every kind of pattern, finished, and the directory they wrote into."""
    with tempfile.TemporaryDirectory(prefix="output-paths-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o777)

        def submit(*options: str) -> str:
            # sbatch from tests.support adds --output=/dev/null; a later --output wins.
            return sbatch("-p", "batch", "-J", "pat job", f"--chdir={folder}", *options,
                          "--wrap", "echo out; echo err >&2")  # fmt: skip

        ids = [
            submit("--output=slurm-%j.out"),  # as the default, but given
            submit(f"--output={folder}/%x-%u-%4j-%A_%a.out", f"--error={folder}/%j-%b.err"),
            submit(f"--output={folder}/pct-%%-%5%j"),
            submit(f"--output={folder}/escaped\\%j"),
            submit("--output=relative-%j.out"),
            submit("--array=1-2", f"--output={folder}/array-%A_%a-%j.out"),
            # Without --output (sbatch's, not the helper's): slurm-%j.out, slurm-%A_%a.out.
            _sbatch_default(folder, ()),
            _sbatch_default(folder, ("--array=11-12",)),
        ]
        try:
            _wait_finished(ids)
            yield folder, ids
        finally:
            subprocess.run(["scancel", *ids], capture_output=True, check=False)


def _sbatch_default(folder: Path, options: tuple[str, ...]) -> str:
    argv = ["sbatch", "--parsable", "-p", "batch", "-J", "default", f"--chdir={folder}"]
    argv += [*options, "--wrap", "echo out; echo err >&2"]
    done = subprocess.run(argv, capture_output=True, check=True, timeout=60, text=True)
    return done.stdout.strip().split(";")[0]


def _wait_finished(ids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = subprocess.run(
            ["squeue", "--states=all", "--noheader", "--format=%T", "--jobs=" + ",".join(ids)],
            capture_output=True,
            check=True,
            text=True,
        ).stdout.split()
        if states and all(state == "COMPLETED" for state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {ids} are {states}")
        time.sleep(0.3)


async def _jobs(ids: list[str], transport: Transport | None = None) -> list[dict[str, Any]]:
    settings = Settings(clusters=(("local", "local://"),), cache_ttl=0.0)
    query = (
        "query($ids: [String!]) { cluster { jobs(filter: {ids: $ids}, first: 100) {"
        f" edges {{ node {{ {FIELDS} }} }} }} }} }}"
    )
    async with app_client(settings, {"local": transport or LocalTransport()}) as client:
        response = await client.post("/graphql", json={"query": query, "variables": {"ids": ids}})
    body = response.json()
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["cluster"]["jobs"]["edges"]]


async def test_paths_are_the_files_written(finished: tuple[Path, list[str]]) -> None:
    """Every stdoutPath and stderrPath exists, and together they are every file written."""
    folder, ids = finished
    jobs = await _jobs(ids)
    assert len(jobs) == len(ids) + 2  # each array has two tasks
    paths = {job["stdoutPath"] for job in jobs} | {job["stderrPath"] for job in jobs}
    written = {str(path) for path in folder.iterdir()}
    assert paths == written


async def test_patterns_are_the_same_on_every_version(finished: tuple[Path, list[str]]) -> None:
    """The raw patterns come back as submitted; a job without --output has Slurm's default."""
    folder, ids = finished
    by_id = {str(job["jobId"]): job for job in await _jobs(ids)}
    given = by_id[ids[1]]
    assert given["stdoutPattern"] == f"{folder}/%x-%u-%4j-%A_%a.out"
    assert given["stderrPattern"] == f"{folder}/%j-%b.err"
    assert by_id[ids[0]]["stderrPattern"] == f"{folder}/slurm-%j.out"  # stderr follows stdout
    assert by_id[ids[6]]["stdoutPattern"] == f"{folder}/slurm-%j.out"
    defaults = [job for job in by_id.values() if job["arrayTaskId"] in ("11", "12")]
    assert [job["stdoutPattern"] for job in defaults] == [f"{folder}/slurm-%A_%a.out"] * 2
    job_id = int(ids[1])
    assert (
        os.path.basename(given["stdoutPath"])
        == f"pat job-root-{job_id:04d}-{job_id}_4294967294.out"
    )


async def test_paths_cost_one_round_trip(finished: tuple[Path, list[str]]) -> None:
    """Selecting paths adds `scontrol --version` (`%b` depends on it) to the same batch."""
    transport = CountingTransport(LocalTransport())
    await _jobs(finished[1], transport)
    [batch] = transport.batches
    assert ("scontrol", "--version") in batch and batch[-1][0] == "squeue"


SUBMIT = """mutation($input: SubmitJobInput!) { submitJob(input: $input) {
  ... on JobSubmitted { job { jobId stdoutPath stdoutPattern } }
  ... on SubmitRejected { code message } } }"""


async def test_a_write_answers_paths_as_a_query_does(unix_users: None) -> None:
    """submitJob's job resolves `%b` (which depends on the Slurm version) on a server that
    has not fetched the version yet: it rides along with the write, in the same round trip."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(
        clusters=(("local", "local://"),), cache_ttl=0.0, tokens=parse_token_map(TOKENS)
    )
    job_input = {"script": "#!/bin/sh\ntrue\n", "stdoutPath": "%j-%b.out", "hold": True}
    async with app_client(settings, {"local": transport}) as client:
        response = await client.post(
            "/graphql",
            json={"query": SUBMIT, "variables": {"input": job_input}},
            headers={"Authorization": "Bearer alice-token"},
        )
    job = response.json()["data"]["submitJob"]["job"]
    try:
        assert transport.calls == 1
        printed = await asyncio.to_thread(_slurm_version)
        b = "4" if (slurm_line(printed) or (0, 0)) >= (24, 11) else "%b"
        assert job["stdoutPattern"] == "/home/alice/%j-%b.out"
        assert job["stdoutPath"] == f"/home/alice/{job['jobId']}-{b}.out"
    finally:
        await slurm_cli("scancel", str(job["jobId"]))


def _slurm_version() -> str:
    done = subprocess.run(["scontrol", "--version"], capture_output=True, check=True, text=True)
    return done.stdout.split()[-1]
