"""The scenario every cluster test and golden capture runs against: one of each kind of job.

Made with Slurm's own CLI (sbatch, scancel, scontrol), never through the code under test, so the
tests compare our answers with what Slurm was actually asked to do.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

OTHER_USER = "sgtest"
DRAINED_NODE = "n4"
DRAIN_REASON = "disk failure on sda, waiting for replacement"
# A name that breaks naive parsers: spaces, a pipe, '=', quotes and non-ASCII letters.
TRICKY_NAME = 'tricky | name = "quoted" ünïcödé ✓'
TRICKY_COMMENT = "comment with | pipes, key=value and 'quotes'"
INVALID_UTF8_NAME = b"bad-\xff\xfe-bytes"


@dataclass
class Scenario:
    """Job ids by role (all strings, Slurm's unique job ids)."""

    running: str = ""
    pending: str = ""
    held: str = ""
    array: str = ""
    dependent: str = ""
    failed: str = ""
    cancelled: str = ""
    completed: str = ""
    other_user: str = ""
    unlimited: str = ""
    invalid_utf8: str = ""
    all_ids: list[str] = field(default_factory=list)


def slurm(*argv: str | bytes, user: str | None = None, conf: str | None = None) -> str:
    """Run a Slurm command (as `user` if given) and return its stdout; fail loudly. `conf`
    names another cluster's slurm.conf (a private one), for this command only."""
    full: list[str | bytes] = list(argv)
    if user is not None:
        full = ["runuser", "-u", user, "--", *full]
    env = None if conf is None else {**os.environ, "SLURM_CONF": conf}
    result = subprocess.run(full, capture_output=True, check=False, timeout=60, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{argv!r} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def ensure_other_user() -> None:
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", OTHER_USER], check=True)


def sbatch(*options: str | bytes, user: str | None = None, conf: str | None = None) -> str:
    out = slurm(
        "sbatch", "--parsable", "--chdir=/tmp", "--output=/dev/null", *options, user=user, conf=conf
    )
    return out.strip().split(";")[0]


def create_scenario() -> Scenario:
    """Submit one job of each kind and wait until each has reached the state it is there for."""
    ensure_other_user()
    slurm("scontrol", "update", f"nodename={DRAINED_NODE}", "state=drain", f"reason={DRAIN_REASON}")
    s = Scenario()
    # The running job and the array's first tasks must outlast the whole suite (which the
    # session-wide scenario spans): a loaded machine or the chroot's second run takes over
    # 10 minutes. The running job's time limit (30 minutes, which the tests read) ends it first.
    s.running = sbatch("-J", TRICKY_NAME, f"--comment={TRICKY_COMMENT}", "-p", "debug",
                       "--time=30", "--wrap", "sleep 3600")  # fmt: skip
    s.pending = sbatch("-J", "waits for its begin time", "--begin=now+3600", "--wrap", "true")
    s.held = sbatch("-J", "held", "--hold", "--wrap", "true")
    s.array = sbatch("-J", "array", "--array=1-6%2", "-p", "batch", "--wrap", "sleep 3600")
    s.dependent = sbatch("-J", "dependent", f"--dependency=afterok:{s.running}", "--wrap", "true")
    s.failed = sbatch("-J", "fails with 3", "-p", "batch", "--wrap", "exit 3")
    s.completed = sbatch("-J", "completes", "-p", "batch", "--wrap", "true")
    s.cancelled = sbatch("-J", "cancelled", "-p", "batch", "--wrap", "sleep 600")
    s.unlimited = sbatch("-J", "unlimited", "-p", "batch", "--time=UNLIMITED", "--hold",
                         "--wrap", "true")  # fmt: skip
    s.other_user = sbatch("-J", "someone else's", "--hold", "--wrap", "true", user=OTHER_USER)
    s.invalid_utf8 = sbatch(b"--job-name=" + INVALID_UTF8_NAME, "--hold", "--wrap", "true")
    s.all_ids = [
        s.running, s.pending, s.held, s.array, s.dependent, s.failed, s.completed,
        s.cancelled, s.unlimited, s.other_user, s.invalid_utf8,
    ]  # fmt: skip
    wait_for_state(s.cancelled, "RUNNING")
    slurm("scancel", s.cancelled)
    wait_for_state(s.running, "RUNNING")
    wait_for_state(s.failed, "FAILED")
    wait_for_state(s.completed, "COMPLETED")
    wait_for_state(s.cancelled, "CANCELLED")
    wait_for_array_running(s.array, 2)
    return s


def job_state(job_id: str, conf: str | None = None) -> str:
    out = slurm(
        "squeue", "--states=all", "--noheader", "--format=%T", f"--jobs={job_id}", conf=conf
    )
    return out.split()[0] if out.split() else ""


def wait_for_state(job_id: str, state: str, timeout: float = 60, conf: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while (current := job_state(job_id, conf)) != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {current!r}, not {state} after {timeout} s")
        time.sleep(0.2)


# States a job is in while it waits, is being set up or runs: every other one is an end.
NOT_ENDED = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED"})


def wait_until_ended(job_ids: list[str], timeout: float = 90) -> dict[str, str]:
    """Wait until every job of `job_ids` has ended (completed, failed, cancelled...); their
    states. For tests that read output, which exists only once a job has started."""
    deadline = time.monotonic() + timeout
    while True:
        states = {job_id: job_state(job_id) for job_id in job_ids}
        if all(state and state not in NOT_ENDED for state in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs have not ended after {timeout} s: {states}")
        time.sleep(0.2)


def wait_for_array_running(array_id: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = slurm("squeue", "--noheader", "--format=%T", "--states=RUNNING", f"--jobs={array_id}")
        if len(out.split()) >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"array {array_id} has not {count} running tasks")
        time.sleep(0.2)


def tear_down(scenario: Scenario) -> None:
    """Cancel what is left of the scenario and return the drained node to service."""
    if scenario.all_ids:
        subprocess.run(["scancel", *scenario.all_ids], capture_output=True, check=False)
    subprocess.run(
        ["scontrol", "update", f"nodename={DRAINED_NODE}", "state=resume"],
        capture_output=True,
        check=False,
    )


def slurm_conf() -> str:
    return os.environ["SLURM_CONF"]


def has_accounting() -> bool:
    """Whether the cluster under test keeps history in slurmdbd (scripts/local-cluster's
    default) rather than only in the completion log (LOCAL_CLUSTER_ACCOUNTING=0)."""
    text = Path(slurm_conf()).read_text()
    return "\nAccountingStorageType=accounting_storage/slurmdbd" in text


# The Slurm CLI retries a refused connection to slurmctld once a second for MessageTimeout
# seconds (10 by default: squeue fails after 9 s) before "Unable to contact slurm controller
# (connect failure)"; with this line first in a copy of slurm.conf, the same failure comes
# after 1 s. For a stopped controller (a closed port) only: a controller that accepts and never
# answers would then be given up on after 2 s instead of at the transport's deadline.
QUICK_CONNECT_FAILURE = "MessageTimeout=2"


def unreachable_slurmdbd(directory: Path) -> dict[str, str]:
    """The environment of a command that reads this cluster's slurm.conf with the slurmdbd port
    moved to one nobody listens on: the real sacct and sacctmgr, meeting a slurmdbd that is down
    (slurmctld still answers)."""
    with socket.socket() as probe:  # a free loopback port, closed again: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = Path(os.environ["SLURM_CONF"]).read_text().splitlines()
    body = [line for line in text if not line.startswith("AccountingStoragePort")]
    conf = directory / "slurm.conf"
    conf.write_text("\n".join([f"AccountingStoragePort={port}", *body]) + "\n")
    conf.chmod(0o644)
    directory.chmod(0o755)
    return {"SLURM_CONF": str(conf)}


def dead_port(environ: dict[str, str]) -> str:
    """The slurmdbd port of `unreachable_slurmdbd`'s slurm.conf."""
    first = Path(environ["SLURM_CONF"]).read_text().split("\n", 1)[0]
    return first.removeprefix("AccountingStoragePort=")


def internals_in(message: str) -> list[str]:
    """What of the cluster's insides a client-visible `message` names: this host's name,
    loopback names and addresses, Slurm's "host:" form, a port (a number of 4-5 digits, as
    slurmctld's, slurmdbd's and MariaDB's are here) or an absolute path."""
    found = [
        name
        for name in (socket.gethostname(), "localhost", "127.0.0.1", "host:", "::1")
        if name and name in message
    ]
    found += re.findall(r"(?<!\d)\d{4,5}(?!\d)", message)
    found += re.findall(r"(?<![\w.])/[\w.-]+", message)
    return found
