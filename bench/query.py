"""Query throughput and latency over HTTP, on a recorded 10,000-job cluster.

    python bench/query.py [--jobs 10000] [--seconds 10]

Starts `bench.serve_recorded` (uvicorn, one worker) on loopback and measures, from a separate
process with keep-alive connections:
  - req/s, p50 and p99 of `jobs(first: 50, filter: {states: [RUNNING]})` at 1 and 4 clients
    (default cache TTL: a snapshot is reused for 1 s, as in production);
  - the wall time of a fresh (uncached) full listing of every job with 10 fields;
  - the server's peak RSS under 4 concurrent fresh full listings.
Targets (issue 2): >= 400 req/s with p99 <= 20 ms at 4 clients; full listing <= 0.5 s;
<= 300 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.server import free_port  # noqa: E402

PAGE_QUERY = """{ cluster { jobs(first: 50, filter: {states: [RUNNING]}) { totalCount edges { node {
  id name user state partition { name } submitTime startTime timeLimitMinutes numCpus nodeList
} } } } }"""
FULL_QUERY = """{ cluster { jobs(first: %d) { edges { node {
  id name user state reason submitTime startTime timeLimitMinutes numCpus nodeList
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


async def load(port: int, clients: int, seconds: float) -> tuple[float, float, float]:
    """Requests/s, p50 ms and p99 ms of PAGE_QUERY with `clients` concurrent connections."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def one_client() -> None:
        async with Client(port, body_of(PAGE_QUERY)) as client:
            first = json.loads(await client.post())  # warm-up, and a check of the answer
            assert len(first["data"]["cluster"]["jobs"]["edges"]) == 50, first
            while time.monotonic() < stop:
                started = time.perf_counter()
                await client.post()
                latencies.append(time.perf_counter() - started)

    begun = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.monotonic() - begun
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    for response_cache in (True, False):
        cached, port = start_server(args.jobs, cache_ttl=1.0, response_cache=response_cache)
        label = "response cache on" if response_cache else "response cache off"
        try:
            for clients in (1, 4):
                rate, p50, p99 = asyncio.run(load(port, clients, args.seconds))
                print(f"jobs(first: 50, RUNNING), {clients} client(s), {label}: {rate:,.0f} req/s, "
                      f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
        finally:
            cached.terminate()
            cached.wait()

    fresh, port = start_server(args.jobs, cache_ttl=0.0)
    try:
        received, decoded = asyncio.run(full_listing(port, args.jobs, runs=5))
        print(f"fresh full listing of {args.jobs:,} jobs x 10 fields: {received * 1000:.0f} ms "
              f"to the last byte, {decoded * 1000:.0f} ms decoded by the client")  # fmt: skip
        asyncio.run(concurrent_listings(port, args.jobs, clients=4))
        print(f"peak RSS after 4 concurrent full listings: {peak_rss_mb(fresh.pid):.0f} MB")
    finally:
        fresh.terminate()
        fresh.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
