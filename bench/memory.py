"""Does the server's memory stay flat under a long mixed load? (issue 18: RSS growth <= 10 %).

    sudo .venv/bin/python bench/memory.py [--minutes 10] [--warmup 60] [--jobs 10000]
                                          [--slurm-conf PATH] [--trace] [--inline-ids]

Serves the API as an operator would (`slurm-graphql serve`, default 1 s cache, response cache
on) on the bench's own --jobs cluster (bench/cluster.py; or --slurm-conf's), and runs 4
keep-alive clients for --minutes, each cycling through a mix a frontend sends: first pages,
state-filtered pages, one job by id (ids varied over the queue), one user's page, the nodes
list, a deep query, and now and then a full listing. RSS is sampled every --sample seconds; the
growth is the median of the last 3 samples against the median of the first 3 after --warmup.

The job-by-id requests send one document with the id as a variable, as Apollo Client and urql
do; --inline-ids writes each id into the document instead (a document per id: what a careless
client or an attacker sends, which the document cache must bound, server/documents.py).

Settings the bench does not set come from its environment, as serve reads them: e.g.
`SLURM_GRAPHQL_DOCUMENT_CACHE_BYTES=0` to tell the document cache's share.

--trace runs the server under tracemalloc (bench/serve_traced.py; several times slower, so use
it to find growth, not to measure speed) and prints the 15 biggest differences between a
snapshot taken after the warm-up and one at the end: what Python code kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cluster import RARE_USER, BenchCluster, serve_api  # noqa: E402
from bench.keepalive import Target  # noqa: E402

FIELDS = "displayId name user state reason submitTime startTime timeLimitMinutes numCpus nodeList"
EDGES = f"{{ edges {{ node {{ {FIELDS} }} }} }}"
MIX = (
    f"{{ cluster {{ jobs(first: 50) {EDGES} }} }}",
    f"{{ cluster {{ jobs(first: 50, filter: {{states: [RUNNING]}}) {EDGES} }} }}",
    "BY_ID",
    "BY_ID",
    "BY_ID",
    f'{{ cluster {{ jobs(first: 50, filter: {{users: ["{RARE_USER}"]}}) {EDGES} }} }}',
    "{ cluster { nodes { name state cpus cpusAllocated realMemoryMb features } } }",
    "{ clusters { partitions { name nodes { name jobs { displayId state } } } } }",
)
FULL_EVERY = 50  # one request in this many is a full listing
BY_ID = f"query Job($id: String!) {{ cluster {{ job(id: $id) {{ {FIELDS} }} }} }}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def mixed_load(
    target: Target, ids: list[int], jobs: int, seconds: float, inline_ids: bool
) -> tuple[int, list[str]]:
    """Requests answered, and the errors of the others (the load goes on past them: a busy
    machine can run a full listing past the execution budget, which is no memory question)."""
    stop = time.monotonic() + seconds
    done = 0
    errors: list[str] = []

    async def one(index: int) -> None:
        nonlocal done
        pick = random.Random(index)
        async with target.client() as client:
            n = 0
            while time.monotonic() < stop:
                n += 1
                variables = None
                if n % FULL_EVERY == 0:
                    query = f"{{ cluster {{ jobs(first: {jobs}) {EDGES} }} }}"
                else:
                    query = MIX[pick.randrange(len(MIX))]
                    if query == "BY_ID":
                        job_id = str(ids[pick.randrange(len(ids))])
                        query, variables = BY_ID, {"id": job_id}
                        if inline_ids:
                            query = f'{{ cluster {{ job(id: "{job_id}") {{ {FIELDS} }} }} }}'
                            variables = None
                try:
                    await client.graphql(query, variables)
                    done += 1
                except RuntimeError as error:
                    errors.append(str(error)[:120])

    await asyncio.gather(*(one(i) for i in range(4)))
    return done, errors


async def run(
    target: Target, ids: list[int], jobs: int, args: argparse.Namespace, trace: Path | None
) -> tuple[list[tuple[float, float]], int, list[str]]:
    seconds = args.minutes * 60
    load = asyncio.create_task(mixed_load(target, ids, jobs, seconds, args.inline_ids))
    samples: list[tuple[float, float]] = []
    begun = time.monotonic()
    traced_warm = False
    while not load.done():
        await asyncio.sleep(args.sample)
        elapsed = time.monotonic() - begun
        samples.append((elapsed, rss_mb(target.pid)))
        print(f"  {elapsed:6.0f} s  RSS {samples[-1][1]:7.1f} MB", file=sys.stderr)
        if trace is not None and not traced_warm and elapsed >= args.warmup:
            os.kill(target.pid, signal.SIGUSR1)
            traced_warm = True
    count, errors = await load
    if trace is not None:
        os.kill(target.pid, signal.SIGUSR1)
        await asyncio.sleep(5)  # the snapshot is written between two requests
    return samples, count, errors


def job_ids(slurm_conf: str) -> list[int]:
    out = subprocess.run(
        ["squeue", "-h", "--all", "-o", "%F"],
        env={**os.environ, "SLURM_CONF": slurm_conf},
        capture_output=True,
        text=True,
    ).stdout
    return sorted({int(i) for i in out.split()})


def growth(samples: list[tuple[float, float]], warmup: float) -> tuple[float, float]:
    after = [rss for elapsed, rss in samples if elapsed >= warmup]
    if len(after) < 6:
        raise SystemExit("too few samples after the warm-up: raise --minutes or lower --sample")
    return statistics.median(after[:3]), statistics.median(after[-3:])


def print_trace(prefix: str) -> None:
    first = tracemalloc.Snapshot.load(f"{prefix}-1.tracemalloc")
    last = tracemalloc.Snapshot.load(f"{prefix}-2.tracemalloc")
    stats = last.compare_to(first, "traceback")
    total = sum(stat.size_diff for stat in stats) / 2**20
    print(f"\ntracemalloc: Python allocations alive at the end that were not after the warm-up: "
          f"{total:+.1f} MiB in all; the 15 biggest:")  # fmt: skip
    for stat in stats[:15]:
        print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-6:]:
            print(f"      {line}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=60, help="seconds before the baseline")
    parser.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--slurm-conf", help="a running cluster instead of the bench's own")
    parser.add_argument("--trace", action="store_true", help="tracemalloc diff (slow)")
    parser.add_argument(
        "--inline-ids", action="store_true", help="write each job id into its document"
    )
    parser.add_argument("--ctld-port", type=int, default=7827)
    args = parser.parse_args()

    with ExitStack() as stack:
        slurm_conf = args.slurm_conf
        if slurm_conf is None:
            if os.geteuid() != 0:
                raise SystemExit("memory.py: give --slurm-conf, or run as root for its cluster")
            cluster = BenchCluster(args.ctld_port, args.ctld_port + 1, max_jobs=args.jobs + 10_000)
            stack.callback(cluster.stop)
            cluster.start()
            cluster.populate(args.jobs)
            slurm_conf = cluster.slurm_conf
        ids = job_ids(slurm_conf)
        max_jobs = max(len(ids), 10_000) + 1_000
        prefix = None
        if args.trace:
            prefix = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "snap")
        target = stack.enter_context(serve_api("serve", slurm_conf, max_jobs, True, prefix))
        started = time.monotonic()
        samples, count, errors = asyncio.run(
            run(target, ids, len(ids), args, Path(prefix) if prefix else None)
        )
        rate = count / (time.monotonic() - started)
        traced = ", under tracemalloc" if args.trace else ""
        traced += ", ids inline" if args.inline_ids else ", ids as variables"
        print(f"mixed load: {args.minutes:g} min, 4 clients, {count:,} requests ({rate:,.1f} "
              f"req/s), {len(ids):,} jobs{traced}; {len(errors)} errors")  # fmt: skip
        for error in sorted(set(errors))[:5]:
            print(f"  error: {error}")
        base, end = growth(samples, args.warmup)
        change = (end - base) / base * 100
        verdict = "within" if change <= 10 else "OVER"
        print(f"RSS after {args.warmup:g} s warm-up {base:.1f} MB, at the end {end:.1f} MB: "
              f"{change:+.1f} % ({verdict} the 10 % bound)")  # fmt: skip
        print("samples (s, MB): " + ", ".join(f"{t:.0f}:{r:.0f}" for t, r in samples))
        if prefix is not None:
            print_trace(prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
