"""jobHistory on the real cluster with slurmdbd: latency and bytes of a page, against sacct --json.

    SLURM_CONF=<cluster>/slurm.conf python bench/history.py [--fill N] [--runs 5]

`--fill N` first submits arrays of trivial jobs as alice until accounting holds N jobs of the
last day (issue 14 asks for 20,000; arrays of 1,000 `true` tasks, 16 at a time on the local
cluster's 4x4 CPUs). slurmctld keeps ended jobs for MinJobAge (an hour here), so start the
cluster with LOCAL_CLUSTER_MAX_JOB_COUNT=40000 for the fill, and restart it afterwards (a clean
start drops them; accounting keeps them) so that the figures are not those of a controller
holding 20,000 jobs. Then, through the app in process (HTTP over ASGI, LocalTransport, sacct run
as the requester), median of --runs: the first page of 50 with each job's efficiency (which
needs the step rows), the same page without steps or efficiency (sacct --allocations), a page
deep in the listing (after the middle job; with totalCount, which reads the whole window, and
without it, when the page asks sacct for the next job ids only: resolvers/history.py), the first
page filtered by user, and the jobs that ended in a 1-hour window (the hour up to the newest
job's end in accounting, so that it holds jobs however long ago the fill ran; its count is
printed); for each, the time of its round trip to the head node (sacct alone) and the sacct
processes it ran; the walk to the middle job, page by page, with the sacct processes each page
ran; and `sacct --json` over the same 24 hours and the same hour, run and decoded (what a
client decoding Slurm's JSON pays). All of these with no window
listing kept (SLURM_GRAPHQL_HISTORY_LISTING_TTL=0: each first or counted page lists the window);
then the first page again while the requester's listing is kept (`listing kept`: what the next
first or counted pages of the same requester and filter cost within the TTL). Targets (issue
14): a page of 50 <= 300 ms; one sacct per page; >= 5x less time than decoding sacct --json.

Left out: network and TLS (ASGI in process), the SSM transport, a head node busy with anything
but this cluster (the machine's load average is printed with the figures), and a database
larger than the window (slurmdbd's indexes are not tried on millions of rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from server.app import create_app  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.tokens import parse_token_map  # noqa: E402
from tests.support.counting import CountingTransport  # noqa: E402
from transport import Command, CommandResult  # noqa: E402
from transport.local import LocalTransport  # noqa: E402

PAGE = """query($filter: JobHistoryFilter, $after: String) { cluster {
  jobHistory(filter: $filter, first: 50, after: $after) { totalCount
    pageInfo { endCursor hasNextPage }
    edges { cursor node { displayId name user state exitCode endTime
      efficiency { cpuEfficiencyPercent memoryEfficiencyPercent } } } } } }"""
# The same page without what only step rows answer (steps, efficiency).
LIGHT = """query($filter: JobHistoryFilter, $after: String) { cluster {
  jobHistory(filter: $filter, first: 50, after: $after) { totalCount
    pageInfo { endCursor hasNextPage }
    edges { cursor node { displayId name user state exitCode endTime } } } } }"""


# The page with efficiency but without totalCount: its cursor is pushed into sacct's window.
UNCOUNTED = PAGE.replace("totalCount", "")


class TimedTransport(CountingTransport):
    """CountingTransport that also keeps each round trip's duration (the head node's share)."""

    def __init__(self, inner: LocalTransport) -> None:
        super().__init__(inner)
        self.durations: list[float] = []

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        t0 = time.perf_counter()
        try:
            return await super().run(commands)
        finally:
            self.durations.append(time.perf_counter() - t0)


def newest_end() -> datetime:
    """When the newest job in accounting's last day ended: the 1-hour window ends there, so
    that it holds jobs however long ago the fill ran (an hour before now may hold none)."""
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-S", "now-1days", "-E", "now", "--format=End"],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "SLURM_TIME_FORMAT": "%s"},
    ).stdout  # fmt: skip
    ends = [int(v) for v in out.split() if v.isdigit() and v != "0"]
    if not ends:
        raise SystemExit("bench/history.py: no ended job in accounting's last day (--fill N)")
    return datetime.fromtimestamp(max(ends), UTC)


def in_accounting() -> int:
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-S", "now-1days", "--format=JobIDRaw"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    return len(out.splitlines())


def fill(target: int) -> None:
    while (have := in_accounting()) < target:
        size = min(1000, target - have)
        print(f"  accounting holds {have} jobs; submitting an array of {size}", flush=True)
        subprocess.run(
            ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "-p", "batch",
             "--chdir=/tmp", "--output=/dev/null", f"--array=1-{size}%16", "--wait",
             "--wrap", "true"],
            check=True, capture_output=True, timeout=7200,
        )  # fmt: skip


async def measure(
    runs: int, hour: tuple[datetime, datetime], listing_ttl: float = 0.0
) -> dict[str, Any]:
    """The figures, with window listings kept for `listing_ttl` seconds (0: every first or
    counted page lists the window: what a page costs when its requester has no recent one);
    `hour` is the 1-hour window's (start, end)."""
    transport = TimedTransport(LocalTransport(timeout=300))
    settings = Settings(
        cache_ttl=0.0,
        response_cache=False,
        tokens=parse_token_map("bench-token-carol=carol:admin"),
        max_cost=10**9,
        history_listing_ttl=listing_ttl,
    )
    app = create_app(settings, transports={"local": transport})
    figures: dict[str, Any] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=300
        ) as client,
    ):

        async def page(
            query: str = PAGE, **variables: Any
        ) -> tuple[float, int, dict[str, Any], int, float]:
            before = len(transport.batches)
            t0 = time.perf_counter()
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": "Bearer bench-token-carol"},
            )
            took = time.perf_counter() - t0
            body = response.json()
            assert "errors" not in body, body
            sacct = sum(a[0] == "sacct" for b in transport.batches[before:] for a in b)
            head = sum(transport.durations[before:])
            return took, len(response.content), body["data"]["cluster"]["jobHistory"], sacct, head

        _, _, first, _, _ = await page(LIGHT)
        total = first["totalCount"]
        if listing_ttl > 0:  # the requester's listing is kept: what its next pages cost
            return {
                name: await timed(page, runs, query)
                for name, query in (
                    ("first page of 50, with efficiency, listing kept", PAGE),
                    ("first page of 50, no steps or efficiency, listing kept", LIGHT),
                )
            }
        # The cursor of the middle job: walk pages of 50 to it once (no steps, no totalCount:
        # after the first, each page asks sacct for its next ids), counting the sacct each
        # page ran (2: the next ids held too few jobs, and the window was read too).
        after = None
        walk_ms: list[float] = []
        sacct_runs: dict[int, int] = {}
        for _ in range(total // 2 // 50):
            took, _, walked, sacct, _ = await page(LIGHT.replace("totalCount", ""), after=after)
            after = walked["pageInfo"]["endCursor"]
            walk_ms.append(took * 1000)
            sacct_runs[sacct] = sacct_runs.get(sacct, 0) + 1
        figures["walk to the middle, pages of 50 without totalCount or steps"] = {
            "pages": len(walk_ms),
            "pages by sacct processes run": {str(k): v for k, v in sorted(sacct_runs.items())},
            "median ms": round(statistics.median(walk_ms), 1),
            "max ms": round(max(walk_ms), 1),
        }
        cases: dict[str, tuple[str, dict[str, Any]]] = {
            "first page of 50, with efficiency": (PAGE, {}),
            "first page of 50, no steps or efficiency": (LIGHT, {}),
            "page deep in the listing": (PAGE, {"after": after}),
            "page deep in the listing, no totalCount (next ids)": (UNCOUNTED, {"after": after}),
            "page deep in the listing, no totalCount, no steps or efficiency": (
                LIGHT.replace("totalCount", ""),
                {"after": after},
            ),
            "filtered by user (alice)": (PAGE, {"filter": {"users": ["alice"]}}),
            "1-hour window (jobs that ended in it)": (
                PAGE,
                {"filter": {"endedAfter": hour[0].isoformat(), "endedBefore": hour[1].isoformat()}},
            ),
        }
        figures["jobs in the window (24 h)"] = total
        for name, (query, variables) in cases.items():
            figures[name] = await timed(page, runs, query, **variables)
    return figures


async def timed(page: Any, runs: int, query: str, **variables: Any) -> dict[str, Any]:
    samples = [await page(query, **variables) for _ in range(runs)]
    return {
        "median ms": round(statistics.median(s[0] for s in samples) * 1000, 1),
        "median ms of the round trip (sacct)": round(
            statistics.median(s[4] for s in samples) * 1000, 1
        ),
        "bytes": samples[0][1],
        "sacct per page": samples[0][3],
        "jobs in its window": samples[0][2].get("totalCount"),
    }


def sacct_json(runs: int, start: str, end: str = "now") -> dict[str, Any]:
    times, decode, size = [], [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            ["sacct", "-a", "--json", "-S", start, "-E", end],
            capture_output=True, check=True, timeout=600, env={**os.environ, "TZ": "UTC"},
        ).stdout  # fmt: skip
        t1 = time.perf_counter()
        jobs = json.loads(out)["jobs"]
        t2 = time.perf_counter()
        times.append(t2 - t0)
        decode.append(t2 - t1)
        size = len(out)
    return {
        "jobs": len(jobs),
        "median ms (run + decode)": round(statistics.median(times) * 1000, 1),
        "median ms (decode only)": round(statistics.median(decode) * 1000, 1),
        "bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        print("bench/history.py: set SLURM_CONF to a cluster with slurmdbd", file=sys.stderr)
        return 2
    if args.fill:
        fill(args.fill)
    newest = newest_end()
    hour = (newest - timedelta(hours=1), newest)
    figures: dict[str, Any] = {"load average (1, 5, 15 min) before": os.getloadavg()}
    figures["1-hour window (UTC)"] = [t.strftime("%Y-%m-%dT%H:%M:%S") for t in hour]
    figures |= asyncio.run(measure(args.runs, hour))
    figures |= asyncio.run(measure(args.runs, hour, listing_ttl=600.0))
    figures["sacct --json, same 24 h"] = sacct_json(args.runs, "now-1days")
    # sacct's -S/-E select the jobs active in the hour: those that ended in it, and any that ran
    # into it (ended after its start), so "jobs" may exceed the jobHistory window's count.
    figures["sacct --json, same hour"] = sacct_json(
        args.runs, *(t.strftime("%Y-%m-%dT%H:%M:%S") for t in hour)
    )
    figures["load average (1, 5, 15 min) after"] = os.getloadavg()
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
