"""A second, private Slurm cluster for tests that need a shape the shared one lacks (GPUs):
scripts/local-cluster with its own directory and free loopback ports, without accounting (no
slurmdbd or MariaDB to start), stopped by its own `stop` (which acts on the PIDs it recorded).

Nothing here touches the process environment: the cluster is reached through `conf`, which a
test passes to the Slurm CLI (tests.support.scenario's `conf=`) and to
`LocalTransport(environ=cluster.environ)`, so the shared cluster stays the one every other
test talks to.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"
NODES = 4  # n1..n4, each slurmd on the port after the one before
# A loaded CI box (two suites on two cores) starts four slurmds slowly; the script waits this
# long for the nodes to be idle, and the test waits a little longer for the script.
START_TIMEOUT = 180


@dataclass(frozen=True)
class PrivateCluster:
    directory: Path
    ctld_port: int
    slurmd_port: int

    @property
    def conf(self) -> str:
        return str(self.directory / "slurm.conf")

    @property
    def environ(self) -> dict[str, str]:
        """The environment that commands reaching this cluster start from."""
        return {**os.environ, "SLURM_CONF": self.conf}


def _free(port: int) -> bool:
    # slurmctld and slurmd listen on every address, so the port must be free on all of them.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port_run(count: int, attempts: int = 200) -> int:
    """The first of `count` consecutive free ports: at a random place (two suites looking at
    once seldom pick the same) below Linux's ephemeral range (32768-60999), where neither an
    outgoing connection nor another test's port-0 server can take one before Slurm binds it."""
    for _ in range(attempts):
        first = random.randrange(20000, 32768 - count)
        if all(_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def _script_environ(cluster: PrivateCluster, gpus: int) -> dict[str, str]:
    environ = {
        **os.environ,
        "LOCAL_CLUSTER_DIR": str(cluster.directory),
        "LOCAL_CLUSTER_CTLD_PORT": str(cluster.ctld_port),
        "LOCAL_CLUSTER_SLURMD_PORT": str(cluster.slurmd_port),
        "LOCAL_CLUSTER_ACCOUNTING": "0",
        "LOCAL_CLUSTER_GPUS": str(gpus),
        "LOCAL_CLUSTER_TIMEOUT": str(START_TIMEOUT),
    }
    environ.pop("SLURM_CONF", None)  # the script sets its own; never the shared cluster's
    return environ


def _stop(environ: dict[str, str]) -> None:
    # `stop` also cleans up after a start that failed halfway (it stops what has a PID).
    with suppress(subprocess.TimeoutExpired):
        subprocess.run(
            [LOCAL_CLUSTER, "stop"], env=environ, capture_output=True, check=False, timeout=120
        )


@contextmanager
def private_cluster(gpus: int = 0, attempts: int = 3) -> Iterator[PrivateCluster]:
    """A cluster of its own in a new directory, with `gpus` fake GPUs on n1, started, then
    stopped and its directory removed."""
    # Not under pytest's tmp_path: that is private to root (0700), and the test users' sbatch
    # must read slurm.conf. The directory holds no secret without accounting.
    directory = Path(tempfile.mkdtemp(prefix="slurm-graphql-cluster-"))
    directory.chmod(0o755)
    environ: dict[str, str] = {}
    try:
        for attempt in range(attempts):
            first = free_port_run(1 + NODES)
            cluster = PrivateCluster(directory, ctld_port=first, slurmd_port=first + 1)
            environ = _script_environ(cluster, gpus)
            started = subprocess.run(
                [LOCAL_CLUSTER, "start"],
                env=environ,
                capture_output=True,
                text=True,
                check=False,
                timeout=START_TIMEOUT + 60,
            )
            if started.returncode == 0:
                break
            _stop(environ)
            # A port free when looked at can be taken before Slurm binds it: other ports then.
            if "already in use" not in started.stderr or attempt == attempts - 1:
                raise RuntimeError(f"private cluster did not start:\n{started.stderr[-3000:]}")
        yield cluster
    finally:
        if environ:
            _stop(environ)
        shutil.rmtree(directory, ignore_errors=True)
