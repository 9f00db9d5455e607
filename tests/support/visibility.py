"""What the visibility tests attack: alice's jobs (running, held, finished) next to bob's on the
real cluster, and the checks that nothing of hers reaches bob.

Jobs are made with Slurm's own CLI as each user (never through the code under test), all of
alice's with one unique name, so a leak of any of her jobs, by name, id, cursor or user, shows in
the raw text of a response.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from resolvers.pagination import encode_cursor
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.scenario import job_state, sbatch, slurm, wait_for_state

# No job has this id here (ids are far below it); its array task form, likewise.
MISSING = "987654321"

# Job documents select every field that names or places a job; connections ask small pages so
# that the nested lists stay cheap (max_cost is raised besides, to test visibility, not cost).
EVERYTHING = """
fragment Everything on Job {
  displayId jobId arrayJobId arrayTaskId name user comment clientMutationId state nodeList
  dependency
  partition { name jobs(first: 20) { totalCount edges { cursor node { displayId name user } } } }
  nodes {
    name
    jobs { displayId jobId name user }
    partitions { name jobs(first: 20) { totalCount edges { node { displayId name user } } } }
  }
}"""


def own_settings(**overrides: Any) -> Settings:
    """The test token map (alice, bob; carol administers) under SLURM_GRAPHQL_JOB_VISIBILITY=own."""
    values: dict[str, Any] = {
        "tokens": parse_token_map(TOKENS),
        "job_visibility": "own",
        "cache_ttl": 0.0,
        "max_page_size": 200,
        "max_cost": 10**9,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class Jobs:
    """alice's jobs and bob's, by role (Slurm job ids as text)."""

    name: str  # every job of alice's carries this name
    alice_running: str
    alice_held: str  # an array of three held tasks: N_[1-3]
    alice_done: str  # completed, still listed by squeue (MinJobAge)
    node: str  # where alice's running job runs, and bob's too
    bob_running: str
    bob_held: str

    @property
    def alice_ids(self) -> tuple[str, ...]:
        """Ids of alice's jobs in every form a control action takes: a job, an array, a task."""
        held = self.alice_held
        return (self.alice_running, held, f"{held}_2", self.alice_done)

    @property
    def alice_forms(self) -> tuple[str, ...]:
        """Her ids, and also as Slurm displays an array's pending tasks (queries take it)."""
        return (*self.alice_ids, f"{self.alice_held}_[1-3]")


def roomy_node(timeout: float = 90.0) -> str:
    """A node of the batch partition with two idle CPUs (the cluster is shared with other
    tests), for alice's running job and bob's beside it. Waited for: the jobs an earlier module
    cancelled free their CPUs only once Slurm has ended them."""
    deadline = time.monotonic() + timeout
    while True:
        for line in slurm(
            "sinfo", "--noheader", "--Node", "--partition=batch", "--format=%N %C %t"
        ).splitlines():
            name, cpus, state = line.split()
            idle = int(cpus.split("/")[1])
            if idle >= 2 and state in ("idle", "mix"):
                return name
        if time.monotonic() > deadline:
            raise RuntimeError(f"no node had two idle CPUs for the visibility tests in {timeout} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def jobs(unix_users: None) -> Iterator[Jobs]:
    """alice runs one job, holds an array and has a finished one; bob runs a job on alice's
    node (so his job's node lists hers, were it not hidden) and holds another."""
    name = f"alice-private-{uuid.uuid4().hex[:10]}"
    made: list[str] = []

    def submit(*options: str, user: str) -> str:
        job_id = sbatch(*options, user=user)
        made.append(job_id)
        return job_id

    try:
        node = roomy_node()
        running = submit("-J", name, f"--comment={name}", "-p", "batch", f"--nodelist={node}",
                         "--time=30", "--wrap", "sleep 600", user="alice")  # fmt: skip
        bob_running = submit("-J", "bob-runs", "-p", "batch", f"--nodelist={node}",
                             "--time=30", "--wrap", "sleep 600", user="bob")  # fmt: skip
        held = submit("-J", name, "--array=1-3", "--hold", "-p", "batch", "--wrap", "true",
                      user="alice")  # fmt: skip
        done = submit("-J", name, "-p", "batch", "--wrap", "true", user="alice")
        bob_held = submit("-J", "bob-holds", "--hold", "-p", "batch", "--wrap", "true",
                          user="bob")  # fmt: skip
        for job_id in (running, bob_running):
            wait_for_state(job_id, "RUNNING", timeout=90)
        wait_for_state(done, "COMPLETED", timeout=90)
        yield Jobs(name, running, held, done, node, bob_running, bob_held)
    finally:
        if made:
            subprocess.run(["scancel", *made], capture_output=True, check=False, timeout=60)


def alice_untouched(jobs: Jobs) -> None:
    """alice's jobs are as she left them: running and named so, her array still held."""
    assert job_state(jobs.alice_running) == "RUNNING"
    names = slurm(
        "squeue", "--noheader", "--states=all", "--format=%j", f"--jobs={jobs.alice_running}"
    )
    assert names.split() == [jobs.name]
    reasons = slurm(
        "squeue", "--noheader", "--format=%T %r", "--array", f"--jobs={jobs.alice_held}"
    )
    assert reasons.split("\n")[:3] == ["PENDING JobHeldUser"] * 3, reasons


def _number(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def assert_nothing_of_alice(text: str, jobs: Jobs) -> None:
    """No trace of alice's jobs in `text` (a raw response): a job of hers (`"user": "alice"`),
    her jobs' name, their ids (as whole numbers) or their cursors. (The bare word may appear: other
    tests on this shared cluster give bob's jobs names and comments that say "alice".)"""
    assert not re.search(r'"user"\s*:\s*"alice"', text), text[:2000]
    assert jobs.name not in text, text[:2000]
    for job_id in {_number(i) for i in jobs.alice_ids}:
        assert not re.search(rf"(?<![0-9]){job_id}(?![0-9])", text), (job_id, text[:2000])
        assert encode_cursor(int(job_id)) not in text, (job_id, text[:2000])


def modulo(text: str, job_id: str) -> str:
    """`text` with `job_id` (and its number) written as <ID>, to compare answers about ids."""
    text = text.replace(job_id, "<ID>")
    return re.sub(rf"(?<![0-9]){_number(job_id)}(?![0-9])", "<ID>", text)


def missing_like(job_id: str) -> str:
    """A job id of the same form as `job_id` that no job has."""
    return MISSING + job_id[len(_number(job_id)) :]
