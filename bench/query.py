"""Query throughput and latency over HTTP: cached on a recorded cluster, uncached on a real one.

    python bench/query.py [--jobs 10000] [--seconds 10] [--slurm-conf PATH | --recorded-only]

1. With the default cache (a snapshot reused for 1 s, as in production): `bench.serve_recorded`
   (uvicorn, one worker) answers from a recorded --jobs cluster, so this measures our side only;
   req/s, p50 and p99 of `jobs(first: 50, filter: {states: [RUNNING]})` at 1 and 4 clients,
   with the response cache on and off.
2. With the cache off, on a real cluster: `slurm-graphql serve` with SLURM_GRAPHQL_CACHE_TTL=0
   and the response cache off, so every request runs `squeue` (slurmctld's job-listing RPCs are
   counted with sdiag to show it): the same page at 1 and 4 clients, the wall time of a full
   listing of every job with 10 fields, and the server's peak RSS under 4 concurrent full
   listings. The cluster is --slurm-conf's (its jobs, whatever they are), or, as root, the
   bench's own (bench/cluster.py: --jobs jobs, torn down at the end).
Targets (issue 2): >= 400 req/s with p99 <= 20 ms at 4 clients; full listing <= 0.5 s;
<= 300 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cluster import BenchCluster, job_rpcs, serve_api  # noqa: E402
from tests.support.server import free_port  # noqa: E402

PAGE_QUERY = """{ cluster { jobs(first: 50, filter: {states: [RUNNING]}) { totalCount edges { node {
  displayId name user state partition { name } submitTime startTime timeLimitMinutes numCpus
  nodeList
} } } } }"""
FULL_QUERY = """{ cluster { jobs(first: %d) { edges { node {
  displayId name user state reason submitTime startTime timeLimitMinutes numCpus nodeList
} } } } }"""


class Client:
    """A minimal keep-alive HTTP/1.1 client, so the load generator costs little CPU."""

    def __init__(self, port: int, body: bytes) -> None:
        self._port = port
        self._request = (
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    async def __aenter__(self) -> Client:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()

    async def post(self) -> bytes:
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode())
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )  # fmt: skip
        return await self._reader.readexactly(length)


def start_server(
    jobs: int, cache_ttl: float, response_cache: bool = True
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_recorded", "--port", str(port), "--jobs", str(jobs),
         "--cache-ttl", str(cache_ttl)] + ([] if response_cache else ["--no-response-cache"]),
        cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            asyncio.run(_probe(port))
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


async def _probe(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


def body_of(query: str) -> bytes:
    return json.dumps({"query": query}).encode()


async def load(port: int, clients: int, seconds: float) -> tuple[float, float, float, int]:
    """Requests/s, p50 ms, p99 ms and count of PAGE_QUERY with `clients` connections (each
    first sends one not counted, as a warm-up)."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def one_client() -> None:
        async with Client(port, body_of(PAGE_QUERY)) as client:
            first = json.loads(await client.post())  # warm-up, and a check of the answer
            # 50 on the recorded cluster; a real one may run fewer jobs.
            assert first["data"]["cluster"]["jobs"]["edges"], first
            while time.monotonic() < stop:
                started = time.perf_counter()
                await client.post()
                latencies.append(time.perf_counter() - started)

    begun = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.monotonic() - begun
    ordered = sorted(latencies)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000, len(ordered)


async def full_listing(port: int, jobs: int, runs: int) -> tuple[float, float]:
    """Median seconds to the response's last byte, and to it decoded by the client."""
    async with Client(port, body_of(FULL_QUERY % jobs)) as client:
        received, decoded = [], []
        for _ in range(runs):
            started = time.perf_counter()
            body = await client.post()
            received.append(time.perf_counter() - started)
            answer = json.loads(body)
            decoded.append(time.perf_counter() - started)
            assert len(answer["data"]["cluster"]["jobs"]["edges"]) == jobs
    return statistics.median(received), statistics.median(decoded)


async def concurrent_listings(port: int, jobs: int, clients: int) -> None:
    async def one() -> None:
        async with Client(port, body_of(FULL_QUERY % jobs)) as client:
            await client.post()

    await asyncio.gather(*(one() for _ in range(clients)))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@contextmanager
def real_cluster(slurm_conf: str | None, jobs: int) -> Iterator[str]:
    """The given cluster, or the bench's own with `jobs` jobs (root only), stopped after."""
    if slurm_conf is not None:
        yield slurm_conf
        return
    if os.geteuid() != 0:
        raise SystemExit("query.py: the cache-off part needs --slurm-conf, or root for its cluster")
    cluster = BenchCluster(max_jobs=jobs + 10_000)
    with ExitStack() as stack:
        stack.callback(cluster.stop)
        cluster.start()
        cluster.populate(jobs)
        yield cluster.slurm_conf


def count_jobs(slurm_conf: str) -> int:
    squeue = ["squeue", "-h", "--all", "-o", "%i"]
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    return len(subprocess.run(squeue, env=env, capture_output=True, text=True).stdout.split())


def cache_off(slurm_conf: str, seconds: float) -> None:
    jobs = count_jobs(slurm_conf)
    with serve_api("cache off", slurm_conf, max(jobs, 10_000), cache=False) as target:
        port = target.port
        assert port is not None
        for clients in (1, 4):
            before = job_rpcs(slurm_conf)
            rate, p50, p99, count = asyncio.run(load(port, clients, seconds))
            per_request = (job_rpcs(slurm_conf) - before) / (count + clients)
            print(f"jobs(first: 50, RUNNING), {clients} client(s), cache off, real squeue "
                  f"({jobs:,} jobs): {rate:,.1f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                  f"slurmctld job listings per request: {per_request:.2f} (anyone else's "
                  "squeue on that cluster counts too)")  # fmt: skip
        received, decoded = asyncio.run(full_listing(port, jobs, runs=3))
        print(f"full listing of {jobs:,} jobs x 10 fields, cache off: {received * 1000:.0f} ms "
              f"to the last byte, {decoded * 1000:.0f} ms decoded by the client")  # fmt: skip
        asyncio.run(concurrent_listings(port, jobs, clients=4))
        print(f"peak RSS after 4 concurrent full listings: {peak_rss_mb(target.pid):.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--slurm-conf", help="a running cluster for the cache-off part")
    parser.add_argument("--recorded-only", action="store_true", help="skip the cache-off part")
    args = parser.parse_args()

    for response_cache in (True, False):
        cached, port = start_server(args.jobs, cache_ttl=1.0, response_cache=response_cache)
        label = "recorded, 1 s cache, response cache " + ("on" if response_cache else "off")
        try:
            for clients in (1, 4):
                rate, p50, p99, _ = asyncio.run(load(port, clients, args.seconds))
                print(f"jobs(first: 50, RUNNING), {clients} client(s), {label}: {rate:,.0f} req/s, "
                      f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
        finally:
            cached.terminate()
            cached.wait()

    if args.recorded_only:
        return 0
    with real_cluster(args.slurm_conf, args.jobs) as slurm_conf:
        cache_off(slurm_conf, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
