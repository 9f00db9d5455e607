"""Replicas sharing one Redis, on the real Slurm cluster: 3 `slurm-graphql serve` processes x 300
WebSocket subscribers plus 4 query clients each, on a changing cluster, with Redis and without.

    python bench/replicas.py [--replicas 3] [--subscribers 300] [--clients 4] [--interval 1.0]
                             [--ttl 1.0] [--duration 30] [--job-seconds 3] [--wave 4]
                             [--runs both|redis|local] [--kill-during-fetch] [--backlog 0]

The cluster is the one `SLURM_CONF` names; without it, the repository's `.local-cluster`, which
`scripts/local-cluster start` starts if needed (as root; `LOCAL_CLUSTER_*` choose another).
Each run starts a real redis-server on a free loopback port (stopped by its PID), then
`--replicas` real `slurm-graphql serve` processes on free loopback ports with
`SLURM_GRAPHQL_REDIS_URL` pointing at it; the second run is the same without Redis. A `squeue`
first on the processes' PATH (tests/support/squeue_counter.py) logs every run of squeue on the
head node with the PID that started it: the counts below come from Slurm's side, not the server.

The workload (bench/slurm_workload.py): `--subscribers` held jobs (`sleep --job-seconds`), one
per slot; every poll interval `--wave` of them are released and one released job is cancelled,
and each job that ended is replaced by a new held one, so states keep moving (PENDING ->
RUNNING -> COMPLETED, CANCELLED). Every replica has `--subscribers` WebSockets, one per slot,
each following its slot's job with `jobStateChanged` and moving on to the next job of the slot
when one ends. `--backlog` more held jobs nobody follows make the queue that long at least
(finished jobs also stay in squeue for the cluster's MinJobAge, an hour on the local cluster, so
the queue grows from run to run: it is printed). `--clients` clients per replica loop a listing
of 50 jobs. Printed, per run:
  - queries alone (no subscriber): squeue runs per cache TTL, all replicas together (target
    with Redis: <= 1), and the gaps between consecutive squeues of all replicas;
  - subscribers + queries: squeue runs per poll interval, all replicas together (target with
    Redis: 1, as with one replica), and by replica;
  - event latency from the poll that saw the change (the event's `at`) to the client, p50 / p99
    (target p99 <= interval + 200 ms);
  - with Redis, leader failover: the replica that ran the latest squeue (the leader) is killed
    with SIGKILL, queries stopped, subscribers still connected, and the time until another
    replica's squeue starts is measured (target <= 2 intervals); with --kill-during-fetch, at a
    moment its poll holds the snapshot fetch lease.
Left out: the bench's own sbatch/scontrol/scancel (the workload, not the API's cost) and its
client side, which runs in this one process on the same 2 CPUs as Slurm and the replicas (a
loaded client adds to the latency it measures); no TLS, no ALB, no SSM (local:// transport, so
a round trip is one squeue on this machine, not an SSM command); one identity for every client
(the per-identity limits are lifted so they do not refuse the load); Redis on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.slurm_workload import Workload  # noqa: E402
from bench.subscriptions import raise_open_files_limit  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.server import Replica, running_servers  # noqa: E402
from tests.support.squeue_counter import SqueueCounter  # noqa: E402
from tests.support.ws import Connection, Subscription  # noqa: E402

TOKEN = "replbench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LISTING = "{ cluster { jobs(first: 50) { totalCount edges { node { jobId state } } } } }"
FOLLOW = "subscription ($id: String!) { jobStateChanged(id: $id) { kind at job { state } } }"
FETCH_LEASE = "slurm-graphql:{local}:lease"  # who fetches the snapshot now (resolvers/shared.py)
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def slurm_conf() -> str:
    """The cluster's slurm.conf: SLURM_CONF, else the repository's local cluster, started."""
    if os.environ.get("SLURM_CONF"):
        return os.environ["SLURM_CONF"]
    done = subprocess.run(
        [str(REPO / "scripts" / "local-cluster"), "start"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/local-cluster start failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().removeprefix("export SLURM_CONF=")


def server_environ(args: argparse.Namespace, conf: str, redis_url: str) -> dict[str, str]:
    many = str(args.replicas * (args.subscribers + args.clients) + 100)
    return {
        "SLURM_CONF": conf,
        "SLURM_GRAPHQL_REDIS_URL": redis_url,
        "SLURM_GRAPHQL_TOKENS": f"{TOKEN}=alice",
        "SLURM_GRAPHQL_POLL_INTERVAL": str(args.interval),
        "SLURM_GRAPHQL_CACHE_TTL": str(args.ttl),
        # Every client is the same identity on one address: lift the per-identity and
        # per-address caps (shared across replicas with Redis) so that they refuse nothing.
        "SLURM_GRAPHQL_RESPONSE_CACHE": "0",
        "SLURM_GRAPHQL_MAX_SUBSCRIPTIONS_PER_USER": many,
        "SLURM_GRAPHQL_MAX_WEBSOCKETS_PER_CLIENT": many,
        "SLURM_GRAPHQL_MAX_CONNECTIONS": many,
        "SLURM_GRAPHQL_MAX_CONNECTIONS_PER_ADDRESS": many,
        "SLURM_GRAPHQL_LOG_LEVEL": "warning",
    }


class Run:
    """One run's replicas, counter, workload and what the clients saw."""

    def __init__(self, replicas: list[Replica], counter: SqueueCounter, workload: Workload) -> None:
        self.replicas = replicas
        self.counter = counter
        self.workload = workload
        self.latencies: dict[int, list[float]] = {replica.pid: [] for replica in replicas}
        self.states: Counter[str] = Counter()
        self.queries = 0
        self.queue = 0  # the listing's totalCount: jobs squeue lists (finished ones included)

    def squeues(self, since: float, until: float = float("inf")) -> list[tuple[int, float]]:
        """(replica PID, time.time()) of every squeue our replicas started in the window."""
        pids = {replica.pid for replica in self.replicas}
        runs = self.counter.runs(since)
        return [(r.parent, r.at) for r in runs if r.parent in pids and r.at < until]


async def query_client(run: Run, replica: Replica, stop: asyncio.Event) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=replica.url, timeout=60, headers=AUTH) as client:
        while not stop.is_set():
            response = await client.post("/graphql", json={"query": LISTING})
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise RuntimeError(response.text[:300])
            run.queries += 1
            run.queue = body["data"]["cluster"]["jobs"]["totalCount"]


async def subscriber(run: Run, replica: Replica, slot: int, ready: list[int]) -> None:
    """One WebSocket following the jobs of `slot`, one after the other, until cancelled (or its
    replica is killed)."""
    async with Connection.open(replica.url, payload=AUTH) as connection:
        first = True
        while not connection.closed.is_set():
            job = run.workload.jobs[slot]
            subscription = await connection.subscribe(FOLLOW, id=job)
            if await follow(run, replica, subscription, connection, first, ready):
                return
            first = False
            await run.workload.ended(slot, job)
            await run.workload.next_job(slot, job)


async def follow(
    run: Run,
    replica: Replica,
    subscription: Subscription,
    connection: Connection,
    first: bool,
    ready: list[int],
) -> bool:
    """Note the latency of each event of one job, up to its end; True if the socket closed."""
    while True:
        closed = asyncio.create_task(connection.closed.wait())
        message = asyncio.create_task(subscription.next(3600))
        await asyncio.wait({closed, message}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if not message.done():
            message.cancel()
            return True
        got = message.result()
        if got.kind == "complete":
            return False
        if got.kind != "next":
            raise RuntimeError(f"subscription: {got}")
        event = got.payload["data"]["jobStateChanged"]
        if event["kind"] == "SNAPSHOT":  # its poll may predate the subscription
            if first:
                first = False
                ready[0] += 1
        else:
            run.states[event["job"]["state"] if event["job"] else event["kind"]] += 1
            at = datetime.fromisoformat(event["at"]).timestamp()
            run.latencies[replica.pid].append(got.received - at)
        if event["job"] and event["job"]["state"] in TERMINAL:
            # The server completes the subscription too; do not wait for it.
            with contextlib.suppress(Exception):
                await subscription.stop()
            return False


async def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def one_run(args: argparse.Namespace, conf: str, redis_url: str) -> dict[str, Any]:
    counter = SqueueCounter()
    workload = Workload(args.subscribers, {"SLURM_CONF": conf}, args.job_seconds, args.wave)
    result: dict[str, Any] = {}
    try:
        await workload.fill()
        environ = {**server_environ(args, conf, redis_url), **counter.path_environ()}
        with running_servers(args.replicas, environ) as replicas:
            run = Run(replicas, counter, workload)
            driving = asyncio.Event()
            driver = asyncio.create_task(workload.drive(args.interval, driving))
            try:
                await measure(args, run, result, bool(redis_url))
            finally:
                driving.set()
                await driver
    finally:
        counter.close()
        await workload.clear()
    return result


async def measure(args: argparse.Namespace, run: Run, result: dict[str, Any], redis: bool) -> None:
    # Queries alone: head-node round trips per TTL, all replicas together.
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(query_client(run, replica, stop))
        for replica in run.replicas
        for _ in range(args.clients)
    ]
    await asyncio.sleep(3)  # warm up: connections, imports, caches
    since, run.queries = time.time(), 0
    await asyncio.sleep(args.duration / 2)
    until = time.time()
    times = sorted(at for _, at in run.squeues(since, until))
    result["queries_per_s"] = run.queries / (until - since)
    result["queue"] = run.queue
    result["squeue_per_ttl_queries"] = len(times) / ((until - since) / args.ttl)
    result["gaps"] = [b - a for a, b in itertools.pairwise(times)]
    stop.set()
    await asyncio.gather(*clients)
    # Subscribers (and the query load again): squeue per poll interval, event latency.
    ready = [0]
    subscribers = [
        asyncio.create_task(subscriber(run, replica, slot, ready))
        for replica in run.replicas
        for slot in range(args.subscribers)
    ]
    try:
        total, began = len(subscribers), time.monotonic()
        await wait_for(
            lambda: ready[0] == total or any(s.done() for s in subscribers), 300, "subscribers"
        )
        for task in subscribers:
            if task.done():
                task.result()
        result["connect_s"] = time.monotonic() - began
        await asyncio.sleep(3)
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(query_client(run, replica, stop))
            for replica in run.replicas
            for _ in range(args.clients)
        ]
        for seen in run.latencies.values():
            seen.clear()
        run.states.clear()
        since, moved = time.time(), run.workload.counts()
        await asyncio.sleep(args.duration)
        until = time.time()
        result["workload"] = run.workload.counts() - moved
        stop.set()
        await asyncio.gather(*clients)
        polls = run.squeues(since, until)
        result["squeue_per_interval"] = len(polls) / ((until - since) / args.interval)
        by_pid = Counter(pid for pid, _ in polls)
        times = sorted(at for _, at in polls)
        result["poll_gaps"] = [b - a for a, b in itertools.pairwise(times)]
        result["by_replica"] = [by_pid[replica.pid] for replica in run.replicas]
        result["latencies"] = [sorted(run.latencies[replica.pid]) for replica in run.replicas]
        result["states"] = dict(run.states)
        if redis:
            result["failover_s"] = await failover(args, run, result)
    finally:
        for task in subscribers:
            task.cancel()
        await asyncio.gather(*subscribers, return_exceptions=True)


async def failover(args: argparse.Namespace, run: Run, result: dict[str, Any]) -> float:
    """SIGKILL the replica that polls (the latest squeue's); seconds until another one runs
    squeue. Only polls ask Slurm now: the query clients have stopped."""
    await asyncio.sleep(2 * args.interval)
    latest = run.squeues(time.time() - 2 * args.interval)
    if not latest:
        raise RuntimeError("no replica polled")
    leader = latest[-1][0]
    # Whether the leader holds the snapshot fetch lease (resolvers/shared.py) as it dies: a
    # poll under way. The new leader's first poll then waits for that lease to lapse.
    with redis.Redis.from_url(args.redis_url) as client:
        lease_ms = int(client.pttl(FETCH_LEASE))
        deadline = time.monotonic() + 10 * args.interval
        # --kill-during-fetch: wait for the leader's next poll to take the lease, then kill.
        while args.kill_during_fetch and lease_ms <= 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
            lease_ms = int(client.pttl(FETCH_LEASE))
    os.kill(leader, signal.SIGKILL)
    killed = time.time()
    result["fetch_lease_ms"] = max(lease_ms, 0)
    while not (taken := [at for pid, at in run.squeues(killed) if pid != leader]):
        if time.time() - killed > 30:
            return float("inf")
        await asyncio.sleep(0.01)
    return taken[0] - killed


def percentile(ordered: list[float], fraction: float) -> float:
    """In milliseconds, from sorted seconds (nearest rank)."""
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)] * 1000


def print_gaps(gaps: list[float], period: float, name: str) -> None:
    """The gaps between consecutive squeues of all replicas together: a short one is a fetch
    that another replica's made needless (two replicas refreshing the same snapshot)."""
    if gaps:
        short = sum(1 for gap in gaps if gap < period / 2)
        print(f"    gaps between squeues: min {min(gaps):.3f} s, median "
              f"{statistics.median(gaps):.3f} s, max {max(gaps):.3f} s, "
              f"{short} of {len(gaps)} under {name} / 2")  # fmt: skip


def print_run(name: str, args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(f"{name}: {args.replicas} replicas x {args.subscribers} subscribers, {args.clients} "
          f"query clients each, interval {args.interval:g} s, TTL {args.ttl:g} s")  # fmt: skip
    print(f"  queue: {result['queue']} jobs in squeue (finished ones stay MinJobAge)")
    print(f"  queries alone: {result['queries_per_s']:.0f} queries/s, "
          f"{result['squeue_per_ttl_queries']:.2f} squeue per TTL (all replicas)")  # fmt: skip
    print_gaps(result["gaps"], args.ttl, "TTL")
    print(f"  {args.replicas * args.subscribers} subscribers connected in "
          f"{result['connect_s']:.1f} s; over {args.duration:g} s the workload "
          f"{', '.join(f'{k} {v}' for k, v in result['workload'].items())}")  # fmt: skip
    print(f"  subscribers + queries: {result['squeue_per_interval']:.2f} squeue per interval "
          f"(by replica: {result['by_replica']})")  # fmt: skip
    print_gaps(result["poll_gaps"], args.interval, "interval")
    ordered = sorted(itertools.chain(*result["latencies"]))
    print(f"  events: {len(ordered)}, new states {result['states']}")
    labelled = [("all", ordered)] + [(str(i), s) for i, s in enumerate(result["latencies"])]
    for name, seen in labelled:
        if seen:
            print(f"    poll -> client, replica {name}: {len(seen)} events, "
                  f"p50 {percentile(seen, 0.5):.0f} ms, p99 {percentile(seen, 0.99):.0f} ms, "
                  f"max {seen[-1] * 1000:.0f} ms")  # fmt: skip
    if "failover_s" in result:
        print(f"  leader SIGKILL -> another replica's squeue: {result['failover_s']:.2f} s "
              f"({result['failover_s'] / args.interval:.2f} intervals); the killed leader "
              f"held the fetch lease for {result['fetch_lease_ms']} ms more")  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    conf = slurm_conf()
    backlog = Workload(0, {"SLURM_CONF": conf})
    try:
        if args.backlog:
            await backlog.backlog(args.backlog)
        await runs(args, conf)
    finally:
        if args.backlog:
            await backlog.clear_backlog()


async def runs(args: argparse.Namespace, conf: str) -> None:
    if args.runs in ("both", "redis"):
        redis_server = RedisServer()
        redis_server.start()
        try:
            args.redis_url = redis_server.url
            print_run("with Redis", args, await one_run(args, conf, redis_server.url))
        finally:
            redis_server.close()
    if args.runs in ("both", "local"):
        print_run("without Redis", args, await one_run(args, conf, ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--job-seconds", type=float, default=3.0, help="each job's sleep")
    parser.add_argument("--wave", type=int, default=4, help="held jobs released per interval")
    parser.add_argument(
        "--runs",
        choices=("both", "redis", "local"),
        default="both",
        help="with Redis, without (each replica alone), or both (the default)",
    )
    parser.add_argument(
        "--backlog", type=int, default=0, help="held jobs nobody follows, for a longer queue"
    )
    parser.add_argument(
        "--kill-during-fetch",
        action="store_true",
        help="kill the leader while its poll holds the snapshot fetch lease",
    )
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
