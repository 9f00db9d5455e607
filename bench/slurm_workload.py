"""A changing workload on a real Slurm cluster, for benches that follow jobs: `slots` jobs held at
first, released in waves, a few cancelled, and each one that ended replaced by a new held job.

Every job is `sleep SECONDS` on one CPU, its output thrown away. A slot names the job a
subscriber follows; `ended(slot, job)` (told by whoever saw the terminal state) queues its
replacement, which the next `tick` submits. One `tick` per poll interval releases `wave` held
jobs and cancels `cancels` released ones, so every interval brings PENDING -> RUNNING ->
COMPLETED and CANCELLED changes. The commands are argv lists run by this process, as root (the
jobs are root's); their count and time are the workload's, never the API's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import Mapping

NAME = "replbench"
BACKLOG_NAME = "replbench-backlog"
SUBMITTERS = 4  # concurrent sbatch runs while filling: faster than one by one, gentle on 2 CPUs


async def run(argv: list[str], environ: Mapping[str, str]) -> str:
    """Run a Slurm command; its stdout. Raises with stderr when it fails."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **environ},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {process.returncode}: {err.decode()[-500:]}")
    return out.decode()


class Workload:
    def __init__(
        self,
        slots: int,
        environ: Mapping[str, str],
        seconds: float = 3.0,
        wave: int = 4,
        cancels: int = 1,
    ) -> None:
        self.environ = dict(environ)
        self.seconds = seconds
        self.wave = wave
        self.cancels = cancels
        self.jobs: list[str] = [""] * slots  # the job each slot follows now
        self.changed = asyncio.Condition()  # notified when a slot gets a new job
        self._held: list[str] = []  # submitted held, not yet released (oldest first)
        self._released: list[str] = []  # released, maybe still running: cancel candidates
        self._ended: dict[int, str] = {}  # slot -> the job that ended, to replace
        self._random = random.Random(13)
        self.submitted = self.released = self.cancelled = self.ticks = 0

    async def _submit(self) -> str:
        argv = ["sbatch", "--parsable", "--hold", "-J", NAME, "-c", "1", "--mem=50"]
        argv += ["--output=/dev/null", "--wrap", f"sleep {self.seconds:g}"]
        job = (await run(argv, self.environ)).strip().split(";")[0]
        self._held.append(job)
        self.submitted += 1
        return job

    async def fill(self) -> None:
        """One held job per slot."""
        queue = list(range(len(self.jobs)))

        async def submitter() -> None:
            while queue:
                slot = queue.pop()
                self.jobs[slot] = await self._submit()

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))

    async def ended(self, slot: int, job: str) -> None:
        """The job of `slot` reached a terminal state (told once per replica: the first counts)."""
        if self.jobs[slot] == job:
            self._ended[slot] = job

    async def next_job(self, slot: int, job: str) -> None:
        """Wait until `slot` follows another job than `job`."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.jobs[slot] != job)

    async def tick(self) -> None:
        """Replace ended jobs, release a wave, cancel a few released ones."""
        self.ticks += 1
        for slot, job in list(self._ended.items()):
            del self._ended[slot]
            if job in self._released:
                self._released.remove(job)
            new = await self._submit()
            async with self.changed:
                self.jobs[slot] = new
                self.changed.notify_all()
        wave = self._held[: self.wave]
        if wave:
            del self._held[: len(wave)]
            await run(["scontrol", "release", ",".join(wave)], self.environ)
            self._released += wave
            self.released += len(wave)
        victims = self._random.sample(self._released, min(self.cancels, len(self._released)))
        if victims:
            await run(["scancel", *victims], self.environ)
            for job in victims:
                self._released.remove(job)
            self.cancelled += len(victims)

    async def drive(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def counts(self) -> Counter[str]:
        """What the workload did so far (ticks run late when sbatch is slow)."""
        return Counter(
            ticks=self.ticks,
            submitted=self.submitted,
            released=self.released,
            cancelled=self.cancelled,
        )

    async def backlog(self, jobs: int) -> None:
        """Submit `jobs` held jobs nobody follows nor releases (BACKLOG_NAME): a queue of a
        chosen size, whose rows every poll reads, encodes and compares, unchanged."""
        argv = ["sbatch", "--parsable", "--hold", "-J", BACKLOG_NAME, "-c", "1", "--mem=50"]
        argv += ["--output=/dev/null", "--wrap", "true"]
        left = [jobs]

        async def submitter() -> None:
            while left[0] > 0:
                left[0] -= 1
                await run(argv, self.environ)

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))

    async def clear_backlog(self) -> None:
        await run(["scancel", "--name", BACKLOG_NAME, "--user", str(os.getuid())], self.environ)

    async def clear(self) -> None:
        """Cancel every job this workload submitted that may still be queued."""
        await run(["scancel", "--name", NAME, "--user", str(os.getuid())], self.environ)
