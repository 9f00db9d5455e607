"""How long starting and stopping scontrol sessions holds the event loop up.

    PYTHONPATH=. python bench/session_loop_lag.py [--rounds 50] [--parallel 4]

Each round opens a local:// transport with `--parallel` sessions, asks that many `version`
requests at once (each starts a session: a new scontrol process), then closes the transport
(each session is killed and reaped). Throughout, a ticker task on the same loop sleeps 1 ms at a
time and notes how late it wakes: what any other request served by this loop waits meanwhile.
Printed per phase (idle: 2 s of nothing first; start: the requests that start sessions; reuse:
as many again, answered by those sessions; stop: the close): the lateness's p50, p99 and max,
and the loop held per session: the time the ticker was late inside the phase, less what it is
late when idle, divided by the sessions (the loop time one costs every other request), and how
much of that the loop's thread was runnable but waiting for a CPU (from the kernel's schedstat):
the machine's load, and the new scontrol's own start-up competing for the CPUs, not the loop held
by this process. A start's own cost is its line less the reuse line (both answer one request per
session). Run it twice: the machine's other load shows too.

Needs the local cluster's scontrol (SLURM_CONF). Leaves out: GraphQL, HTTP and the answer's
parsing (the transport alone). Starts are what a server does rarely: each round starts fresh
sessions, where a server starts one per MAX_AGE (300 s), MAX_REQUESTS or failed session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from resolvers.slurm.version import version_command  # noqa: E402
from transport.local import LocalTransport  # noqa: E402

TICK = 0.001


class Ticker:
    """Wakes every TICK and notes when it was due and when it woke: a loop held up by anything
    else wakes it late."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []  # (due, woke)

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            self.ticks.append((due, time.perf_counter()))

    async def during(self, work: Awaitable[object]) -> Phase:
        """Run `work`; its phase is the window it ran in. A tick late across the window's end is
        counted for the part inside it (`work` may hold the loop to its very end)."""
        began, waited = time.perf_counter(), cpu_wait()
        await work
        ended, waited = time.perf_counter(), cpu_wait() - waited
        await asyncio.sleep(3 * TICK)  # the tick that was due inside the window wakes
        phase = Phase.of(self.ticks, began, ended)
        phase.cpu_wait = waited
        return phase


def cpu_wait() -> float:
    """Seconds this thread (the loop's) has waited for a CPU while runnable, so far (Linux)."""
    with open("/proc/thread-self/schedstat") as stat:
        return int(stat.read().split()[1]) / 1e9


@dataclass
class Phase:
    window: float = 0.0  # seconds
    held: float = 0.0  # seconds the ticker was late inside the window
    late: list[float] = field(default_factory=list)  # ms, each tick that was late in it
    cpu_wait: float = 0.0  # seconds the loop's thread was runnable but had no CPU

    @classmethod
    def of(cls, ticks: list[tuple[float, float]], began: float, ended: float) -> Phase:
        phase = cls(window=ended - began)
        for due, woke in ticks:
            inside = min(woke, ended) - max(due, began)
            if inside > 0:
                phase.held += inside
                phase.late.append((woke - due) * 1000)
        return phase

    def __iadd__(self, other: Phase) -> Phase:
        self.window += other.window
        self.held += other.held
        self.late += other.late
        self.cpu_wait += other.cpu_wait
        return self


def report(label: str, phase: Phase, sessions: int, idle: Phase | None) -> None:
    late = phase.late or [0.0]
    cuts = statistics.quantiles(late, n=100, method="inclusive") if len(late) > 1 else late * 99
    line = (
        f"{label:6} {phase.window * 1000:8.1f} ms  ticker late: p50 {cuts[49]:5.2f} ms  "
        f"p99 {cuts[98]:6.2f} ms  max {max(late):6.2f} ms"
    )
    if idle is not None:
        # What the ticker would have been late anyway, had the loop been idle as long.
        held = phase.held - idle.held / idle.window * phase.window
        waited = phase.cpu_wait - idle.cpu_wait / idle.window * phase.window
        line += (
            f"  loop held per session {held * 1000 / sessions:5.2f} ms, of which waiting for a "
            f"CPU {waited * 1000 / sessions:5.2f}"
        )
    print(line)


async def measure(rounds: int, parallel: int) -> None:
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    idle = await ticker.during(asyncio.sleep(2))
    report("idle", idle, 0, None)
    starts, reuses, stops = Phase(), Phase(), Phase()
    for _ in range(rounds):
        transport = LocalTransport(sessions=parallel)
        asks = [transport.run([version_command()]) for _ in range(parallel)]
        starts += await ticker.during(asyncio.gather(*asks))
        asks = [transport.run([version_command()]) for _ in range(parallel)]
        reuses += await ticker.during(asyncio.gather(*asks))
        stats = transport.session_stats
        assert stats is not None
        assert (stats.started, stats.answered, stats.failed) == (parallel, 2 * parallel, 0), stats
        stops += await ticker.during(transport.aclose())
    ticking.cancel()
    report("start", starts, rounds * parallel, idle)
    report("reuse", reuses, rounds * parallel, idle)
    report("stop", stops, rounds * parallel, idle)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.parallel))


if __name__ == "__main__":
    main()
