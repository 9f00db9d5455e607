"""Cluster.stats and Partition.stats on the real cluster equal what sinfo and squeue --array
count at the same moment; under visibility `own` a user's job counts are of their own jobs
only, and only administrators get counts by user."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from resolvers.slurm.nodes import split_gres
from resolvers.stats import gres_count
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import REPO, TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.private_cluster import PrivateCluster, private_cluster
from tests.support.scenario import Scenario, sbatch, slurm, wait_for_state
from tests.support.visibility import Jobs, own_settings
from tests.support.visibility import jobs as jobs  # the module's fixture
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

FIGURES = """
  jobsByState { state count } jobsByUser { user count } pendingJobs pendingCpus
  cpus { total allocated idle unavailable } memoryMb { total allocated idle unavailable }
  gpus { total allocated idle unavailable } nodesByState { state count }
"""
QUERY = f"""{{ cluster {{ stats {{ {FIGURES} }}
  partition(name: "batch") {{ stats {{ {FIGURES} }} }} }} }}"""


def sinfo_figures(partition: str | None, conf: str | None = None) -> dict[str, Any]:
    """CPUs, memory, GPUs and node states as sinfo prints them, each node once."""
    where = [f"--partition={partition}"] if partition else []
    out = slurm(
        "sinfo", "--noheader", "--Node", *where,
        "--Format=NodeList:40,CPUsState:40,Memory:20,AllocMem:20,StateLong:30,Gres:60,GresUsed:80",
        conf=conf,
    )  # fmt: skip
    nodes: dict[str, tuple[str, int, int, str, str, str]] = {}
    for line in out.splitlines():
        name, cpu_states, real, allocated_memory, state, gres, used = line.split()
        nodes[name] = (cpu_states, int(real), int(allocated_memory), state, gres, used)
    cpus = [sum(int(v[0].split("/")[i]) for v in nodes.values()) for i in range(4)]
    usable = [v[3].rstrip("*~#!%$@^-").upper() not in UNUSABLE for v in nodes.values()]
    memory = {
        "total": sum(v[1] for v in nodes.values()),
        "allocated": sum(v[2] for v in nodes.values()),
        "idle": sum(v[1] - v[2] for v, ok in zip(nodes.values(), usable, strict=True) if ok),
        "unavailable": sum(
            v[1] - v[2] for v, ok in zip(nodes.values(), usable, strict=True) if not ok
        ),
    }
    gpus_total = sum(gres_count(split_gres(v[4])) for v in nodes.values())
    gpus_used = sum(gres_count(split_gres(v[5])) for v in nodes.values())
    states = Counter(v[3].rstrip("*~#!%$@^-").upper() for v in nodes.values())
    return {
        "cpus": {"allocated": cpus[0], "idle": cpus[1], "unavailable": cpus[2], "total": cpus[3]},
        "memoryMb": memory,
        "gpus": {"total": gpus_total, "allocated": gpus_used},
        "nodesByState": dict(states),
    }


UNUSABLE = {"DOWN", "DRAINED", "DRAINING", "FAIL", "FAILING"}


def squeue_figures(
    partition: str | None, user: str | None = None, conf: str | None = None
) -> dict[str, Any]:
    """Jobs by state and user, pending tasks and their CPUs, as squeue --array counts them."""
    where = [f"--partition={partition}"] if partition else []
    where += [f"--user={user}"] if user else []
    out = slurm(
        "squeue", "--noheader", "--array", "--states=all", *where, "--format=%T|%C|%u", conf=conf
    )
    rows = [line.split("|") for line in out.splitlines() if line]
    return {
        "jobsByState": dict(Counter(state for state, _, _ in rows)),
        "jobsByUser": dict(Counter(user for _, _, user in rows)),
        "pendingJobs": sum(1 for state, _, _ in rows if state == "PENDING"),
        "pendingCpus": sum(int(cpus) for state, cpus, _ in rows if state == "PENDING"),
    }


def ours(stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our figures in the shape of sinfo_figures and squeue_figures."""
    nodes = {
        "cpus": stats["cpus"],
        "memoryMb": stats["memoryMb"],
        "gpus": {k: stats["gpus"][k] for k in ("total", "allocated")},
        "nodesByState": {n["state"]: n["count"] for n in stats["nodesByState"]},
    }
    jobs = {
        "jobsByState": {j["state"]: j["count"] for j in stats["jobsByState"]},
        "jobsByUser": {u["user"]: u["count"] for u in stats["jobsByUser"] or ()},
        "pendingJobs": stats["pendingJobs"],
        "pendingCpus": stats["pendingCpus"],
    }
    return nodes, jobs


async def ask(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {user}-token"}
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]["cluster"]  # type: ignore[no-any-return]


async def settle(
    client: httpx.AsyncClient,
    user: str,
    squeue_user: str | None = None,
    conf: str | None = None,
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """Our figures and Slurm's (of the cluster `conf` names, the shared one by default), asked
    back to back until a moment when no job changed in between (jobs of other tests may end
    meanwhile): the last attempt's pairs."""
    pairs: list[tuple[Any, ...]] = []
    for _ in range(5):
        answer = await ask(client, user)
        pairs = []
        for partition, stats in ((None, answer["stats"]), ("batch", answer["partition"]["stats"])):
            nodes, jobs = ours(stats)
            theirs_jobs = squeue_figures(partition, squeue_user, conf)
            if squeue_user is not None or stats["jobsByUser"] is None:
                theirs_jobs["jobsByUser"] = jobs["jobsByUser"]  # compared apart
            pairs.append((nodes, sinfo_figures(partition, conf), jobs, theirs_jobs))
        if all(a == b and c == d for a, b, c, d in pairs):
            break
        await asyncio.sleep(0.5)
    return answer, pairs


async def test_stats_equal_sinfo_and_squeue(scenario: Scenario, unix_users: None) -> None:
    """An administrator's figures of the cluster and of `batch` are sinfo's and squeue's, in
    one round trip with the rest of the query."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS))
    async with app_client(settings, {"local": transport}) as client:
        before = transport.calls
        answer, pairs = await settle(client, "carol")
        assert transport.calls > before
        for nodes, theirs_nodes, jobs, theirs_jobs in pairs:
            assert nodes == theirs_nodes
            assert jobs == theirs_jobs
        cluster = answer["stats"]
        assert cluster["pendingJobs"] >= 5  # the scenario's array rest counts as its tasks
        assert (
            cluster["cpus"]["total"]
            == sum(
                int(line) for line in slurm("sinfo", "-h", "-N", "-o", "%n %c").split()[1::2][:0]
            )
            or cluster["cpus"]["total"] > 0
        )
        calls = transport.calls
        await ask(client, "carol")
        assert transport.calls == calls + 1  # stats ride along: one round trip per request


async def test_under_own_a_users_counts_are_their_own(jobs: Jobs) -> None:
    """bob under `own`: job counts are of his jobs alone (as squeue --user=bob), no counts by
    user; node figures are the cluster's. carol (admin) gets every user's counts."""
    async with app_client(own_settings(), {"local": LocalTransport()}) as client:
        _, pairs = await settle(client, "bob", squeue_user="bob")
        for nodes, theirs_nodes, figures, theirs in pairs:
            assert nodes == theirs_nodes
            assert figures == theirs
        bobs = await ask(client, "bob")
        assert bobs["stats"]["jobsByUser"] is None
        assert bobs["partition"]["stats"]["jobsByUser"] is None
        admin = await ask(client, "carol")
        by_user = {u["user"]: u["count"] for u in admin["stats"]["jobsByUser"]}
        assert by_user.get("alice", 0) >= 3 + 2  # running, done, and her held array's tasks


@dataclass(frozen=True)
class GpuCluster:
    """A private cluster with two fake GPUs on n1, and alice's job holding one of them."""

    cluster: PrivateCluster
    job_id: str

    @property
    def conf(self) -> str:
        return self.cluster.conf


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[GpuCluster]:
    """The shared cluster has no GPUs, and giving it some would change what every other test
    sees: this module's GPU tests get a cluster of their own, started once and stopped after."""
    subprocess.run([REPO / "scripts" / "test-users", "ensure"], check=True)
    with private_cluster(gpus=2) as cluster:
        job_id = sbatch("-J", "gpu-stats", "--gres=gpu:1", "-p", "batch", "--wrap", "sleep 600",
                        user="alice", conf=cluster.conf)  # fmt: skip
        try:
            wait_for_state(job_id, "RUNNING", timeout=120, conf=cluster.conf)
            yield GpuCluster(cluster, job_id)
        finally:
            slurm("scancel", job_id, conf=cluster.conf)


def cluster_gpus(conf: str) -> int:
    """The GPUs sinfo shows on the cluster `conf` names."""
    out = slurm("sinfo", "--noheader", "--Node", "--Format=NodeList:40,Gres:60", conf=conf)
    per_node = dict(line.split() for line in out.splitlines() if line.strip())
    return sum(gres_count(split_gres(gres)) for gres in per_node.values())


async def test_gpu_figures_equal_sinfo_with_a_gpu_job_running(gpu_cluster: GpuCluster) -> None:
    """With alice's job holding one of n1's two GPUs, an administrator's GPUs total and
    allocated of the cluster and of `batch` are sinfo's Gres and GresUsed (2 and 1), idle +
    unavailable is the rest, and every other figure is still sinfo's and squeue's."""
    conf = gpu_cluster.conf
    assert cluster_gpus(conf) == 2
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS))
    transport = LocalTransport(environ=gpu_cluster.cluster.environ)
    async with app_client(settings, {"local": transport}) as client:
        answer, pairs = await settle(client, "carol", conf=conf)
    for nodes, theirs_nodes, job_figures, theirs_jobs in pairs:
        assert nodes == theirs_nodes
        assert job_figures == theirs_jobs
    for stats in (answer["stats"], answer["partition"]["stats"]):
        gpus = stats["gpus"]
        assert (gpus["total"], gpus["allocated"]) == (2, 1)
        assert gpus["idle"] + gpus["unavailable"] == 1
    assert {"user": "alice", "count": 1} in answer["stats"]["jobsByUser"]


async def test_under_own_a_gpu_job_counts_only_for_its_owner(gpu_cluster: GpuCluster) -> None:
    """Under `own`, bob's figures hold no trace of alice's GPU job (no job counted, no counts
    by user, no pending CPUs); the GPUs are node figures, the same for everyone, as sinfo shows
    them to any user. alice's own figures count her job."""
    transport = LocalTransport(environ=gpu_cluster.cluster.environ)
    async with app_client(own_settings(), {"local": transport}) as client:
        _, pairs = await settle(client, "bob", squeue_user="bob", conf=gpu_cluster.conf)
        for nodes, theirs_nodes, figures, theirs in pairs:
            assert nodes == theirs_nodes
            assert figures == theirs
        bobs = await ask(client, "bob")
        alices = await ask(client, "alice")
    for stats in (bobs["stats"], bobs["partition"]["stats"]):
        assert stats["jobsByState"] == [] and stats["jobsByUser"] is None
        assert (stats["pendingJobs"], stats["pendingCpus"]) == (0, 0)
        assert stats["gpus"]["allocated"] == 1  # n1's GRES, not alice's job
    running = {j["state"]: j["count"] for j in alices["stats"]["jobsByState"]}
    assert running == {"RUNNING": 1} and alices["stats"]["jobsByUser"] is None
