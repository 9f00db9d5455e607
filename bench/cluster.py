"""A bench's own Slurm cluster, never the shared one: its own directory, ports and MaxJobCount.

`scripts/local-cluster` starts it (root only); `populate` fills it with N jobs of 8 users, a few
running (`sleep`) and the rest held, as a busy cluster's queue looks; `stop` cancels them, stops
the daemons by their recorded PIDs and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.keepalive import Target
from tests.support.server import free_port, running_process

REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"
# Accounts every Debian system has, so jobs of 8 users need no new accounts on the machine; held
# jobs never run, and the running ones belong to `nobody`, which can run `sleep`.
USERS = ("nobody", "daemon", "bin", "sys", "games", "man", "lp", "mail")
# The user whose share of the queue is RARE_SHARE: the users-filtered page asks for it.
RARE_USER = "mail"
RARE_SHARE = 0.01
SUBMITTERS = 4


@dataclass
class BenchCluster:
    ctld_port: int = 7817
    slurmd_port: int = 7818
    max_jobs: int = 20_000
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sg-bench-")))

    @property
    def slurm_conf(self) -> str:
        return str(self.directory / "slurm.conf")

    def environ(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.slurm_conf}

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "LOCAL_CLUSTER_DIR": str(self.directory),
            "LOCAL_CLUSTER_CTLD_PORT": str(self.ctld_port),
            "LOCAL_CLUSTER_SLURMD_PORT": str(self.slurmd_port),
            "LOCAL_CLUSTER_MAX_JOB_COUNT": str(self.max_jobs),
            "LOCAL_CLUSTER_TIMEOUT": "120",
            # No slurmdbd: what the benches compare (bench/vs_slurmrestd.py's docstring) has
            # none, and its MariaDB and slurmdbd would take the ctld port + 20 and + 21.
            "LOCAL_CLUSTER_ACCOUNTING": "0",
        }
        # Its progress (stop lists every job id it cancels) is shown only when it fails.
        done = subprocess.run([LOCAL_CLUSTER, action], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"local-cluster {action} failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        os.chmod(self.directory, 0o755)  # slurmrestd runs as an unprivileged user and reads it
        self._script("start")

    def stop(self) -> None:
        try:
            self._script("stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def populate(self, jobs: int, running: int = 8) -> list[int]:
        """Submit `jobs` jobs (root submits as each user with --uid); returns their ids."""
        plan: list[tuple[str, bool]] = [("nobody", True)] * running
        rare = max(1, round(jobs * RARE_SHARE))
        plan += [(RARE_USER, False)] * rare
        others = [u for u in USERS if u != RARE_USER]
        plan += [(others[i % len(others)], False) for i in range(jobs - len(plan))]
        # A few shells, each submitting its share in one loop: sbatch costs ~20 ms of controller
        # time each, so this is what takes the time (about 3 minutes per 10,000 on 2 cores).
        shells = []
        try:
            for part in range(SUBMITTERS):
                script = self.directory / f"submit-{part}.sh"
                script.write_text(
                    "".join(
                        f"sbatch --parsable --uid={user} -p batch -o /dev/null "
                        + ("--wrap='sleep 3600'\n" if runs else "-H --wrap=true\n")
                        for user, runs in plan[part::SUBMITTERS]
                    )
                )
                shells.append(
                    subprocess.Popen(
                        ["sh", "-e", str(script)],
                        stdout=subprocess.PIPE,
                        env=self.environ(),
                        cwd="/tmp",
                        text=True,
                    )
                )
            ids = []
            for shell in shells:
                out, _ = shell.communicate()
                if shell.returncode != 0:
                    raise RuntimeError("sbatch failed while filling the bench cluster")
                ids += [int(line.split(";")[0]) for line in out.split()]
        finally:
            for shell in shells:  # on an error, no submitter outlives the bench
                if shell.poll() is None:
                    shell.kill()
                    shell.wait()
        self._wait_running(running)
        return sorted(ids)

    def _wait_running(self, running: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "-h", "-t", "R", "-o", "%i"],
                env=self.environ(),
                capture_output=True,
                text=True,
            ).stdout
            if len(out.split()) >= running:
                return
            time.sleep(0.5)
        raise RuntimeError(f"fewer than {running} jobs started on the bench cluster")


@contextmanager
def serve_api(
    name: str, slurm_conf: str, max_jobs: int, cache: bool, traced: str | None = None
) -> Iterator[Target]:
    """`slurm-graphql serve` on the cluster of `slurm_conf`, as an operator would run it; with
    `cache` False no snapshot or response is kept: every request runs Slurm's commands. With
    `traced`, under bench/serve_traced.py, which writes its snapshots to that prefix."""
    port = free_port()
    environ = {
        "SLURM_CONF": slurm_conf,
        "SLURM_GRAPHQL_LOG_LEVEL": "warning",
        "SLURM_GRAPHQL_CACHE_TTL": "1" if cache else "0",
        "SLURM_GRAPHQL_RESPONSE_CACHE": "1" if cache else "0",
        # A full listing of every job must fit one page and the cost bound.
        "SLURM_GRAPHQL_MAX_PAGE_SIZE": str(max_jobs),
        "SLURM_GRAPHQL_ASSUMED_JOBS": str(max_jobs),
        # The execution budget (20 s) is a guard, not what is measured: on a busy 2-core machine
        # four concurrent full listings can pass it, and one error would end a long run.
        "SLURM_GRAPHQL_MAX_SECONDS": "120",
    }
    argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    if traced is not None:
        argv[2:4] = ["bench.serve_traced", traced]
    with running_process(argv, f"http://127.0.0.1:{port}/healthz", environ) as pid:
        yield Target(name, pid, port=port)


JOB_RPCS = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE", "REQUEST_JOB_USER_INFO")


def job_rpcs(slurm_conf: str) -> int:
    """How many job listings slurmctld has served (sdiag): each squeue run asks for one."""
    out = subprocess.run(
        ["sdiag"], env={**os.environ, "SLURM_CONF": slurm_conf}, capture_output=True, text=True
    ).stdout
    total = 0
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in JOB_RPCS:
            total += int(line.split("count:")[1].split()[0])
    return total
