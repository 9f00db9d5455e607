"""Replicas sharing one Redis: 3 API processes x 300 subscribers plus 4 query clients each, on a
changing (scripted) cluster, with Redis and without.

    python bench/replicas.py [--replicas 3] [--subscribers 300] [--clients 4] [--interval 1.0]
                             [--ttl 1.0] [--duration 30] [--changes 30]

Each replica is `slurm-graphql`'s app under uvicorn in its own process, over its own scripted
cluster (bench/subscriptions.py's ScriptedCluster: squeue answers `--subscribers` jobs, and each
call moves `--changes` of them to another state). Every replica gets `--subscribers` WebSocket
subscribers (one job each) and `--clients` clients looping a job listing. Printed, per run:
  - squeue calls per poll interval, all replicas together (target with Redis: 1, as one replica);
  - squeue calls per cache TTL while only the queries run (target with Redis: <= 1);
  - event latency from the poll that saw the change to the client, p50 / p99 (target p99 <=
    interval + 200 ms);
  - with Redis, leader failover: the leading replica is killed with SIGKILL (queries stopped, so
    only polls ask Slurm) and the time until another replica polls is measured (<= 2 intervals).
The same run without Redis shows the per-replica cost for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.subscriptions import (  # noqa: E402
    ScriptedCluster,
    raise_open_files_limit,
    stats,
    subscriber,
)
from tests.support.counting import MockTransport  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from transport.base import Command, CommandResult  # noqa: E402


class Cluster(ScriptedCluster):
    """ScriptedCluster, which also answers scontrol: no nodes or partitions, Slurm 22.05."""

    def __init__(self, jobs: int, changes: int) -> None:
        super().__init__(jobs, changes)
        self.squeue_times: list[float] = []  # time.time() of each squeue, to see the gaps

    def __call__(self, command: Command) -> CommandResult:
        if command.argv[0] == "squeue":
            self.squeue_times.append(time.time())
            return super().__call__(command)
        version = "slurm 22.05.8\n" if "--version" in command.argv else ""
        return CommandResult(command.argv, version, "", 0)


LISTING = "{ cluster { jobs(first: 50) { totalCount edges { node { jobId state } } } } }"


def serve(port: int, args: argparse.Namespace) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from server.app import create_app
    from server.settings import Settings

    cluster = Cluster(args.subscribers, args.changes)
    settings = Settings(
        poll_interval=args.interval,
        cache_ttl=args.ttl,
        response_cache=False,
        max_subscriptions_per_connection=10,
        # One anonymous client on loopback holds every stream, and with Redis the cap is shared.
        max_subscriptions_per_user=100_000,
        max_websockets_per_client=args.subscribers + 10,
        redis_url=args.redis or None,
    )
    app = create_app(settings, transports={"local": MockTransport(cluster, url="scripted://")})

    async def bench_stats(request: Request) -> Response:
        return JSONResponse(
            {"squeue_calls": cluster.squeue_calls, "times": cluster.squeue_times, "sent": [0]}
        )

    app.router.routes.append(Route("/bench/stats", bench_stats))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_replicas(
    args: argparse.Namespace, redis_url: str
) -> list[tuple[int, subprocess.Popen[bytes]]]:
    replicas = []
    for _ in range(args.replicas):
        port = free_port()
        argv = [sys.executable, __file__, "--serve", str(port), "--redis", redis_url]
        argv += [f"--{k}={getattr(args, k)}" for k in ("subscribers", "interval", "ttl", "changes")]
        replicas.append((port, subprocess.Popen(argv, cwd=REPO)))
    return replicas


async def wait_up(port: int) -> None:
    for _ in range(600):
        try:
            await stats(port)
            return
        except (OSError, IndexError):
            await asyncio.sleep(0.05)
    raise RuntimeError(f"replica on {port} did not start")


async def squeues(ports: list[int]) -> list[int]:
    return [int((await stats(port))["squeue_calls"]) for port in ports]


async def query_client(port: int, counter: list[int], stop: asyncio.Event) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not stop.is_set():
            response = await client.post("/graphql", json={"query": LISTING})
            if response.status_code != 200 or "errors" in response.json():
                raise RuntimeError(response.text[:300])
            counter[0] += 1


async def one_run(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    replicas = start_replicas(args, redis_url)
    ports = [port for port, _ in replicas]
    result: dict[str, Any] = {}
    try:
        await asyncio.gather(*(wait_up(port) for port in ports))
        # Queries alone: head-node round trips per TTL, all replicas together.
        stop, done = asyncio.Event(), [0]
        clients = [
            asyncio.create_task(query_client(port, done, stop))
            for port in ports
            for _ in range(args.clients)
        ]
        await asyncio.sleep(2)  # warm up
        before, began, done[0] = await squeues(ports), time.monotonic(), 0
        window = time.time()
        await asyncio.sleep(args.duration / 2)
        after, elapsed = await squeues(ports), time.monotonic() - began
        result["queries_per_s"] = done[0] / elapsed
        result["squeue_per_ttl_queries"] = (sum(after) - sum(before)) / (elapsed / args.ttl)
        # The gaps between consecutive squeues of all replicas together: refreshing ahead at
        # 0.9 of the TTL makes them 0.9 TTL; a shorter one is a fetch that another replica's
        # made needless (two replicas refreshing the same snapshot).
        every = [float(t) for port in ports for t in (await stats(port))["times"]]
        times = sorted(t for t in every if t >= window)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        result["gaps"] = gaps
        stop.set()
        await asyncio.gather(*clients)
        # Subscribers (and the query load again): squeue per poll interval, event latency.
        latencies: list[float] = []
        first, ready = asyncio.Event(), [0, args.subscribers * len(ports)]
        subs = [
            asyncio.create_task(subscriber(port, str(100_000 + i), latencies, first, ready))
            for port in ports
            for i in range(args.subscribers)
        ]
        await asyncio.wait_for(first.wait(), 180)
        await asyncio.sleep(3)
        stop, done = asyncio.Event(), [0]
        clients = [
            asyncio.create_task(query_client(port, done, stop))
            for port in ports
            for _ in range(args.clients)
        ]
        latencies.clear()
        before, began = await squeues(ports), time.monotonic()
        await asyncio.sleep(args.duration)
        after, elapsed = await squeues(ports), time.monotonic() - began
        stop.set()
        await asyncio.gather(*clients)
        result["squeue_per_interval"] = (sum(after) - sum(before)) / (elapsed / args.interval)
        result["by_replica"] = [a - b for a, b in zip(after, before, strict=True)]
        ordered = sorted(latencies)
        result["events"] = len(ordered)
        result["p50_ms"] = statistics.median(ordered) * 1000 if ordered else None
        result["p99_ms"] = ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else None
        if redis_url:
            result["failover_s"] = await failover(args, replicas)
        for task in subs:
            task.cancel()
        await asyncio.gather(*subs, return_exceptions=True)
    finally:
        for _, process in replicas:
            if process.poll() is None:
                process.terminate()
        for _, process in replicas:
            process.wait()
    return result


async def failover(
    args: argparse.Namespace, replicas: list[tuple[int, subprocess.Popen[bytes]]]
) -> float:
    """SIGKILL the replica that polls; seconds until another one polls."""
    ports = [port for port, _ in replicas]
    first = await squeues(ports)
    await asyncio.sleep(3 * args.interval)
    grown = [a - b for a, b in zip(await squeues(ports), first, strict=True)]
    leader = max(range(len(ports)), key=lambda i: grown[i])
    others = [p for i, p in enumerate(ports) if i != leader]
    base = await squeues(others)
    os.kill(replicas[leader][1].pid, signal.SIGKILL)
    killed = time.monotonic()
    while await squeues(others) == base:
        if time.monotonic() - killed > 30:
            return float("inf")
        await asyncio.sleep(0.01)
    return time.monotonic() - killed


def print_run(name: str, args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(f"{name}: {args.replicas} replicas x {args.subscribers} subscribers, {args.clients} "
          f"query clients each, interval {args.interval:g} s, TTL {args.ttl:g} s")  # fmt: skip
    print(f"  queries alone: {result['queries_per_s']:.0f} queries/s, "
          f"{result['squeue_per_ttl_queries']:.2f} squeue per TTL (all replicas)")  # fmt: skip
    gaps = result["gaps"]
    if gaps:
        short = sum(1 for gap in gaps if gap < args.ttl / 2)
        print(f"    gaps between squeues: min {min(gaps):.3f} s, median "
              f"{statistics.median(gaps):.3f} s, {short} of {len(gaps)} under TTL / 2")  # fmt: skip
    print(f"  subscribers + queries: {result['squeue_per_interval']:.2f} squeue per interval "
          f"(by replica over the run: {result['by_replica']})")  # fmt: skip
    print(f"  events: {result['events']}, poll -> client p50 {result['p50_ms']:.0f} ms, "
          f"p99 {result['p99_ms']:.0f} ms")  # fmt: skip
    if "failover_s" in result:
        print(f"  leader SIGKILL -> another replica polls: {result['failover_s']:.2f} s "
              f"({result['failover_s'] / args.interval:.2f} intervals)")  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    redis = RedisServer()
    redis.start()
    try:
        print_run("with Redis", args, await one_run(args, redis.url))
    finally:
        redis.close()
    print_run("without Redis", args, await one_run(args, ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args)
        return 0
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
