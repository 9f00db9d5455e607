"""slurm-graphql against Debian's slurmrestd, side by side on one real N-job Slurm cluster.

    sudo .venv/bin/python bench/vs_slurmrestd.py [--jobs 10000] [--seconds 5] [--rounds 3]

One command, as root: it installs slurmrestd if missing (scripts/install-system-deps), starts its
OWN cluster with scripts/local-cluster (a temporary directory, ports 7817-7821, MaxJobCount raised;
never the shared test cluster), fills it with --jobs jobs of 8 users (8 running, the rest held,
one user with 1 %), then starts three servers on it:
  - `slurm-graphql serve`, default 1 s snapshot cache (and its response cache);
  - `slurm-graphql serve` with the cache off (SLURM_GRAPHQL_CACHE_TTL=0, response cache off):
    every request runs Slurm's commands;
  - `slurmrestd -s openapi/v0.0.38 -a rest_auth/local unix:<socket>`, as the unprivileged
    `nobody` (it refuses root), the way Debian ships it.
Each round measures every server in turn, the order rotating between rounds; the table shows the
median of --rounds rounds. 4 keep-alive clients (bench/keepalive.py) run in this process and count
every step a user sees: the request, the whole response, and decoding its JSON; for slurmrestd,
which has no paging or user filter, also taking the first 50 (or the user's) of the full list.

Rows: the first page of 50 jobs; a full listing with 10 fields (1 client, median of
--listings); one job by id, ids varied over the whole queue (req/s and p99; one document with
the id as a variable, as Apollo Client and urql send it); the page of one
user with 1 % of the jobs; the nodes list; the server's peak RSS (VmHWM, reset first) while
4 clients fetch the full listing at once.

Left out: authentication cost (both servers are anonymous / rest_auth/local), TLS and a real
network (slurm-graphql on loopback TCP, slurmrestd on a unix socket), slurmdbd (there is none,
so slurmrestd loads no dbv plugin and neither side reads accounting), writes (submit, cancel) and
subscriptions, and a second uvicorn worker. slurm-graphql's execution budget is raised to 120 s
(a guard, not a figure: on a busy machine concurrent full listings can pass the default 20 s).
The clients share the machine's cores with the servers and with slurmctld, as they would on a
small head node; on a busy machine the absolute figures move a lot, the ratios less.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cluster import RARE_USER, BenchCluster, serve_api  # noqa: E402
from bench.keepalive import Client, Target  # noqa: E402

REST = "/slurm/v0.0.38"
REST_USER = "nobody"
FIELDS = "displayId name user state reason submitTime startTime timeLimitMinutes numCpus nodeList"
EDGES = f"{{ edges {{ node {{ {FIELDS} }} }} }}"
PAGE = f"{{ cluster {{ jobs(first: 50) {EDGES} }} }}"
# One job by id as frontends send it (Apollo Client, urql, gql): one document, the id a variable.
BY_ID = f"query Job($id: String!) {{ cluster {{ job(id: $id) {{ {FIELDS} }} }} }}"
USER_PAGE = f'{{ cluster {{ jobs(first: 50, filter: {{users: ["{RARE_USER}"]}}) {EDGES} }} }}'
NODES = "{ cluster { nodes { name state cpus cpusAllocated realMemoryMb features } } }"
REST_FIELDS = (
    "job_id", "name", "user_name", "job_state", "state_reason", "submit_time", "start_time",
    "time_limit", "cpus", "nodes",
)  # fmt: skip

Request = Callable[[Client, int], Awaitable[int]]  # (client, request number) -> items seen


class Work:
    """What a user asks for, as each server is asked it."""

    def __init__(self, jobs: int, ids: list[int]) -> None:
        self.jobs = jobs
        self.ids = ids

    async def page(self, target: Target, client: Client, n: int) -> int:
        if target.socket is None:
            data = await client.graphql(PAGE)
            return len(data["cluster"]["jobs"]["edges"])
        return len((await client.get_json(f"{REST}/jobs"))["jobs"][:50])

    async def full(self, target: Target, client: Client, n: int) -> int:
        if target.socket is None:
            first = self.jobs + 100
            data = await client.graphql(f"{{ cluster {{ jobs(first: {first}) {EDGES} }} }}")
            return len(data["cluster"]["jobs"]["edges"])
        jobs = (await client.get_json(f"{REST}/jobs"))["jobs"]
        return len([{k: job.get(k) for k in REST_FIELDS} for job in jobs])

    async def by_id(self, target: Target, client: Client, n: int) -> int:
        job_id = self.ids[n % len(self.ids)]
        if target.socket is None:
            data = await client.graphql(BY_ID, {"id": str(job_id)})
            return int(data["cluster"]["job"] is not None)
        return len((await client.get_json(f"{REST}/job/{job_id}"))["jobs"])

    async def user_page(self, target: Target, client: Client, n: int) -> int:
        if target.socket is None:
            data = await client.graphql(USER_PAGE)
            return len(data["cluster"]["jobs"]["edges"])
        jobs = (await client.get_json(f"{REST}/jobs"))["jobs"]
        return len([j for j in jobs if j["user_name"] == RARE_USER][:50])

    async def nodes(self, target: Target, client: Client, n: int) -> int:
        if target.socket is None:
            return len((await client.graphql(NODES))["cluster"]["nodes"])
        return len((await client.get_json(f"{REST}/nodes"))["nodes"])


async def rate(
    target: Target, work: Callable[[Target, Client, int], Awaitable[int]], clients: int,
    seconds: float, offset: int,
) -> tuple[float, float]:  # fmt: skip
    """Requests/s and p99 seconds of `clients` keep-alive clients, each making at least one."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def one(index: int) -> None:
        n = offset + index * 7919  # each client its own walk through the ids
        async with target.client() as client:
            await work(target, client, n)  # warm-up: connection open, first answer checked
            while True:
                n += 1
                started = time.perf_counter()
                seen = await work(target, client, n)
                latencies.append(time.perf_counter() - started)
                if seen < 1:
                    raise RuntimeError(f"{target.name}: an empty answer")
                if time.monotonic() >= stop:
                    return

    begun = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(clients)))
    ordered = sorted(latencies)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return len(latencies) / (time.monotonic() - begun), p99


async def listing_seconds(target: Target, work: Work, runs: int) -> float:
    async with target.client() as client:
        timings = []
        for n in range(runs):
            started = time.perf_counter()
            seen = await work.full(target, client, n)
            timings.append(time.perf_counter() - started)
            if seen < work.jobs:
                raise RuntimeError(f"{target.name}: {seen} of {work.jobs} jobs listed")
    return statistics.median(timings)


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM, so earlier rows do not count in the next."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss(pid: int) -> float:
    """VmHWM in MB: the most resident memory since the process started or the last reset."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def peak_rss_mb(target: Target, work: Work, clients: int) -> float:
    reset_peak_rss(target.pid)

    async def one(n: int) -> None:
        async with target.client() as client:
            await work.full(target, client, n)

    await asyncio.gather(*(one(n) for n in range(clients)))
    return peak_rss(target.pid)


async def measure(
    target: Target, work: Work, args: argparse.Namespace, rnd: int
) -> dict[str, float]:
    c, s = args.clients, args.seconds
    out: dict[str, float] = {}
    out["page"], _ = await rate(target, work.page, c, s, rnd)
    out["full"] = await listing_seconds(target, work, args.listings)
    out["by_id"], out["by_id_p99"] = await rate(target, work.by_id, c, s, rnd * 104729)
    out["user_page"], _ = await rate(target, work.user_page, c, s, rnd)
    out["nodes"], _ = await rate(target, work.nodes, c, s, rnd)
    out["rss"] = await peak_rss_mb(target, work, c)
    return out


ROWS = (
    ("first page of 50 jobs", "page", "{:,.1f} req/s"),
    ("full listing, 10 fields", "full", "ms"),
    ("one job by id, varied ids", "by_id", "{:,.1f} req/s"),
    ("  its p99", "by_id_p99", "ms"),
    (f"page of one user's jobs ({RARE_USER}, 1 %)", "user_page", "{:,.1f} req/s"),
    ("nodes list", "nodes", "{:,.1f} req/s"),
    ("peak RSS, 4 concurrent full listings", "rss", "{:,.0f} MB"),
)


def table(results: dict[str, list[dict[str, float]]]) -> str:
    names = list(results)
    lines = ["| work | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key, unit in ROWS:
        cells = []
        for name in names:
            value = statistics.median(r[key] for r in results[name])
            if unit == "ms":
                cells.append(f"{value * 1000:,.0f} ms")
            elif value < 10 and "req/s" in unit:  # slurmrestd's listings: well under 1 req/s
                cells.append(f"{value:.2f} req/s")
            else:
                cells.append(unit.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextmanager
def slurmrestd(cluster: BenchCluster) -> Iterator[Target]:
    home = cluster.directory / "slurmrestd"
    home.mkdir()
    shutil.chown(home, REST_USER)
    socket = home / "socket"
    log = (cluster.directory / "slurmrestd.log").open("wb")
    argv = ["slurmrestd", "-s", "openapi/v0.0.38", "-a", "rest_auth/local", f"unix:{socket}"]
    process = subprocess.Popen(
        argv, user=REST_USER, group="nogroup", extra_groups=[], cwd=home, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT,
        env={"SLURM_CONF": cluster.slurm_conf, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("slurmrestd did not start; see " + log.name)
            time.sleep(0.1)
        yield Target("slurmrestd", process.pid, socket=str(socket))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def conditions(args: argparse.Namespace, jobs: int) -> str:
    version = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", "slurmrestd"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{jobs:,} jobs (8 running, the rest held, 8 users), Slurm {version}, "
        f"{args.clients} keep-alive clients, {args.seconds:g} s per rate, median of "
        f"{args.rounds} rounds (rotating order), {os.cpu_count()} CPUs, load average {load} "
        f"at the end, Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--listings", type=int, default=3, help="full listings per round")
    parser.add_argument("--ctld-port", type=int, default=7817, help="slurmd: the next 4 ports")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("vs_slurmrestd: run as root (it starts its own Slurm cluster)")
    if shutil.which("slurmrestd") is None:
        subprocess.run([REPO / "scripts" / "install-system-deps"], check=True)

    cluster = BenchCluster(args.ctld_port, args.ctld_port + 1, max_jobs=args.jobs + 10_000)
    started = time.monotonic()
    print(f"starting a bench cluster in {cluster.directory}", file=sys.stderr)
    with ExitStack() as stack:
        stack.callback(cluster.stop)
        cluster.start()
        ids = cluster.populate(args.jobs)
        print(f"{len(ids):,} jobs in {time.monotonic() - started:.0f} s", file=sys.stderr)
        random.Random(18).shuffle(ids)
        work = Work(args.jobs, ids)
        conf, jobs = cluster.slurm_conf, cluster.max_jobs
        targets = [
            stack.enter_context(serve_api("slurm-graphql, 1 s cache", conf, jobs, cache=True)),
            stack.enter_context(serve_api("slurm-graphql, cache off", conf, jobs, cache=False)),
            stack.enter_context(slurmrestd(cluster)),
        ]
        results: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            for target in order:
                print(f"round {rnd + 1}: {target.name}", file=sys.stderr)
                results[target.name].append(asyncio.run(measure(target, work, args, rnd)))
        print(table(results))
        print()
        print(conditions(args, len(ids)))
    print(f"whole run: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
