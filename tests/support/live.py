"""Helpers for subscription tests: a transport that stamps each round trip, one that plays a
Slurm that has purged a job, and job submission off the event loop."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace

from resolvers.slurm.jobs import RECORD_SEPARATOR
from tests.support.counting import CountingTransport
from tests.support.scenario import job_state, sbatch
from transport import Command, CommandResult, Transport
from transport.local import LocalTransport

POLLER_TASK = "poller:"
# Below Slurm's MaxJobId (67043328) and far above any id the test cluster gives.
UNKNOWN_ID = "67043327"


class StampingTransport(CountingTransport):
    """Counts batches (CountingTransport) and notes when each one started and ended."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.started: list[float] = []
        self.ended: list[float] = []

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.started.append(time.monotonic())
        try:
            return await super().run(commands)
        finally:
            self.ended.append(time.monotonic())

    def squeue_calls(self) -> int:
        return sum(1 for batch in self.batches for argv in batch if argv[0] == "squeue")


class SlowSqueue(StampingTransport):
    """Every squeue answers `delay` seconds late, as on a loaded head node (the real squeue
    runs, after the wait)."""

    def __init__(self, delay: float, inner: Transport | None = None) -> None:
        super().__init__(inner if inner is not None else LocalTransport())
        self.delay = delay

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        if any(command.argv[0] == "squeue" for command in commands):
            await asyncio.sleep(self.delay)
        return await super().run(commands)


def _boundary(argv: Sequence[str]) -> str:
    spec = next(arg for arg in argv if arg.startswith("--Format="))
    return spec.rsplit(RECORD_SEPARATOR, 1)[1]


class PurgingTransport(StampingTransport):
    """The real cluster, except for jobs a test says Slurm has frozen or purged.

    Slurm forgets a finished job `MinJobAge` (here 3600 s) after it ends, too long for a test, and
    changing it would change every other test's cluster. So this wrapper plays that part: a
    `freeze`d job keeps the squeue row it had when frozen (polls miss its later states), and a
    `purge`d one is gone from squeue and from `scontrol show job`, answered as Slurm answers for
    a job it does not know. sacct and sacct -c are the real ones.

    A job(id) lookup's squeue carries a sacct to run only if it prints nothing
    (Command.otherwise): for a purged job, it asks for an id Slurm never gave (UNKNOWN_ID),
    which Slurm answers exactly as it does a forgotten one, so the real sacct runs.
    """

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self._frozen: dict[str, tuple[str, str] | None] = {}  # job id -> (row, its boundary)
        self._purged: set[str] = set()

    def freeze(self, job_id: str) -> None:
        self._frozen[job_id] = None

    def purge(self, job_id: str) -> None:
        self._purged.add(job_id)

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        results = await super().run([self._forget(command) for command in commands])
        return [self._rewrite(result) for result in results]

    def _forget(self, command: Command) -> Command:
        """A lookup whose squeue asks for a purged job asks for UNKNOWN_ID instead."""
        argv = command.argv
        if argv[0] != "squeue" or command.otherwise is None:
            return command
        purged = {f"--jobs={job_id}" for job_id in self._purged}
        changed = tuple(f"--jobs={UNKNOWN_ID}" if arg in purged else arg for arg in argv)
        if changed == argv:
            return command
        # squeue itself then, not a session asking scontrol for the real job.
        return replace(command, argv=changed, interactive=None)

    def _rewrite(self, result: CommandResult) -> CommandResult:
        argv = result.argv
        if argv[:4] == ("scontrol", "--oneliner", "show", "job") and argv[4] in self._purged:
            stderr = "slurm_load_jobs error: Invalid job id specified\n"
            return CommandResult(argv, "", stderr, 1)
        if argv[0] != "squeue" or not (self._frozen or self._purged):
            return result
        boundary = _boundary(argv)
        end = RECORD_SEPARATOR + boundary + "\n"
        rows = result.stdout.split(end)
        kept = []
        for row in rows[:-1]:
            job_id = row.split("\x1f", 2)[1]
            if job_id in self._purged:
                continue
            if job_id in self._frozen:
                frozen = self._frozen[job_id]
                if frozen is None:
                    self._frozen[job_id] = (row, boundary)
                else:
                    row = frozen[0].replace(frozen[1], boundary)
            kept.append(row + end)
        return replace(result, stdout="".join(kept) + rows[-1])


async def submit(*options: str) -> str:
    """sbatch off the event loop (the server under test runs in it); returns the job id."""
    return await asyncio.to_thread(sbatch, *options)


async def slurm_cli(*argv: str) -> None:
    await asyncio.to_thread(subprocess.run, list(argv), check=True, capture_output=True)


async def wait_until_state(job_id: str, state: str, within: float = 30) -> None:
    """Wait, asking Slurm directly, until the job is in `state`."""
    deadline = time.monotonic() + within
    while await asyncio.to_thread(job_state, job_id) != state:
        assert time.monotonic() < deadline, f"job {job_id} never reached {state}"
        await asyncio.sleep(0.2)


def poller_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(POLLER_TASK)]
