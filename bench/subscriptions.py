"""Subscriptions at scale: 1,000 WebSocket subscribers on loopback against a changing cluster.

    python bench/subscriptions.py [--subscribers 1000] [--interval 1.0] [--changes 50]
                                  [--duration 600]

Starts the API (uvicorn, one worker, in its own process) over a scripted cluster: squeue
answers with `--subscribers` jobs made from golden rows, and every squeue call moves `--changes`
of them to another non-terminal state (PENDING, RUNNING, SUSPENDED), so subscriptions live for
the whole run. One client process opens one graphql-transport-ws connection per subscriber,
each following its own job with `jobStateChanged`, and reports:
  - polls per interval (squeue calls the server made, over the run, per interval elapsed);
  - event latency p50 / p99 from the poll that saw the change (the event's `at`) to the client;
  - the server's RSS once every subscriber has its first event, and at the end.
Targets (issue 5): one poll per interval; p99 <= 100 ms from poll to client; RSS growth <= 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synthetic import synthetic_squeue  # noqa: E402
from resolvers.slurm.jobs import FIELD_SEPARATOR, RECORD_SEPARATOR  # noqa: E402
from tests.support.counting import MockTransport  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from transport.base import Command, CommandResult  # noqa: E402

QUERY = "subscription ($id: String!) { jobStateChanged(id: $id) { kind at job { state } } }"
STATES = ("PENDING", "RUNNING", "SUSPENDED")
_TEMPLATE = "scripted0boundary"
_STATE = 6  # index of State among squeue's structured fields


class ScriptedCluster:
    """A cluster of `jobs` jobs; each squeue call first changes `changes` of them. MockTransport's
    handler: it answers one command at a time."""

    def __init__(self, jobs: int, changes: int) -> None:
        text = synthetic_squeue(jobs, _TEMPLATE)
        end = RECORD_SEPARATOR + _TEMPLATE + "\n"
        self._rows = [row.split(FIELD_SEPARATOR) for row in text.split(end)[:-1]]
        for index, row in enumerate(self._rows):
            row[0] = row[1] = str(100_000 + index)  # plain jobs, not array tasks
            row[2], row[3] = "0", "N/A"
            row[_STATE] = "PENDING"
        self._changes = changes
        self._random = random.Random(5)
        self.squeue_calls = 0
        self.first_call: float | None = None

    def __call__(self, command: Command) -> CommandResult:
        return CommandResult(command.argv, self._answer(command), "", 0)

    def _answer(self, command: Command) -> str:
        if command.argv[0] != "squeue":
            raise ValueError(f"the scripted cluster only answers squeue, not {command.argv[0]}")
        self.squeue_calls += 1
        self.first_call = self.first_call or time.monotonic()
        for row in self._random.sample(self._rows, self._changes):
            row[_STATE] = self._random.choice([s for s in STATES if s != row[_STATE]])
        spec = next(a for a in command.argv if a.startswith("--Format="))
        boundary = spec.rsplit(RECORD_SEPARATOR, 1)[1]
        end = RECORD_SEPARATOR + boundary + "\n"
        return "".join(
            FIELD_SEPARATOR.join(r).replace(_TEMPLATE, boundary) + end for r in self._rows
        )


def serve(port: int, jobs: int, changes: int, interval: float) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import Message, Receive, Scope, Send

    from server.app import create_app
    from server.gc_tuning import tune_for_serving
    from server.settings import Settings

    cluster = ScriptedCluster(jobs, changes)
    # Every subscriber is the same anonymous client on loopback: lift the per-client caps.
    settings = Settings(
        poll_interval=interval,
        max_subscriptions_per_connection=10,
        max_subscriptions_per_user=jobs,
        max_websockets_per_client=jobs,
    )
    app = create_app(settings, transports={"local": MockTransport(cluster, url="scripted://")})

    sent = [0] * 10_001  # events by whole milliseconds from poll to send; the last: >= 10 s

    async def stamped(scope: Scope, receive: Receive, send: Send) -> None:
        """The app, noting how long after its poll each event leaves the server."""

        async def send_stamped(message: Message) -> None:
            text = message.get("text") or ""
            if '"at":"' in text:
                at = text.split('"at":"', 1)[1].split('"', 1)[0]
                lag = time.time() - datetime.fromisoformat(at).timestamp()
                sent[min(int(lag * 1000), 10_000)] += 1
            await send(message)

        await app(scope, receive, send_stamped if scope["type"] == "websocket" else send)

    async def stats(request: Request) -> Response:
        elapsed = time.monotonic() - (cluster.first_call or time.monotonic())
        return JSONResponse(
            {"squeue_calls": cluster.squeue_calls, "elapsed": elapsed, "sent": sent}
        )

    app.router.routes.append(Route("/bench/stats", stats))
    tune_for_serving()  # as `slurm-graphql serve` does
    uvicorn.run(stamped, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def raise_open_files_limit() -> None:
    """One socket per subscriber on each side: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    del soft


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bench/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
    writer.close()
    answer: dict[str, Any] = json.loads(body)
    return answer


async def subscriber(
    port: int, job_id: str, latencies: list[float], first: asyncio.Event, ready: list[int]
) -> None:
    import websockets

    url = f"ws://127.0.0.1:{port}/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        await socket.recv()
        payload = {"query": QUERY, "variables": {"id": job_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        seen_first = False
        async for raw in socket:
            received = time.time()
            message = json.loads(raw)
            if message["type"] != "next":
                raise RuntimeError(f"job {job_id}: {message}")
            event = message["payload"]["data"]["jobStateChanged"]
            if not seen_first:
                seen_first = True
                ready[0] += 1
                if ready[0] == ready[1]:
                    first.set()
                continue  # the SNAPSHOT: its poll may predate the subscription
            latencies.append(received - datetime.fromisoformat(event["at"]).timestamp())


async def measure(
    port: int, pid: int, subscribers: int, interval: float, duration: float
) -> list[asyncio.Task[None]]:
    """Run the subscribers and report; returns their (still running) tasks."""
    latencies: list[float] = []
    first = asyncio.Event()
    ready = [0, subscribers]
    tasks = [
        asyncio.create_task(subscriber(port, str(100_000 + i), latencies, first, ready))
        for i in range(subscribers)
    ]
    started = time.monotonic()
    await asyncio.wait_for(first.wait(), 120)
    print(f"{subscribers} subscribers connected in {time.monotonic() - started:.1f} s")
    await asyncio.sleep(5)  # settle: imports, caches and buffers warm up
    latencies.clear()
    before = await stats(port)
    rss_start = rss_mb(pid)
    print(f"server RSS at start: {rss_start:.1f} MB")
    begun = time.monotonic()
    while (left := duration - (time.monotonic() - begun)) > 0:
        await asyncio.sleep(min(60, left))
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()
            raise RuntimeError("a subscriber stopped")
        print(
            f"  {time.monotonic() - begun:5.0f} s: {len(latencies)} events, "
            f"RSS {rss_mb(pid):.1f} MB",
            flush=True,
        )
    after = await stats(port)
    rss_end = rss_mb(pid)
    report(interval, latencies, before, after, rss_start, rss_end)
    return tasks


def percentile(histogram: list[int], fraction: float) -> int:
    """The bucket (whole milliseconds) holding the given fraction of a histogram's counts."""
    wanted, seen = fraction * sum(histogram), 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return bucket
    return len(histogram) - 1


def report(
    interval: float,
    latencies: list[float],
    before: dict[str, Any],
    after: dict[str, Any],
    rss_start: float,
    rss_end: float,
) -> None:
    polls = after["squeue_calls"] - before["squeue_calls"]
    intervals = (after["elapsed"] - before["elapsed"]) / interval
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(f"polls per interval: {polls / intervals:.3f} ({polls:.0f} squeue calls)")
    sent = [a - b for a, b in zip(after["sent"], before["sent"], strict=True)]
    print(f"server side, poll -> event sent: p50 {percentile(sent, 0.5)} ms, "
          f"p99 {percentile(sent, 0.99)} ms")  # fmt: skip
    print(f"events: {len(ordered)}; latency poll -> client: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {ordered[-1] * 1000:.1f} ms")  # fmt: skip
    growth = (rss_end - rss_start) / rss_start * 100
    print(f"server RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at the end ({growth:+.1f} %)")


async def run(port: int, server: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    tasks = await measure(port, server.pid, args.subscribers, args.interval, args.duration)
    # The server goes first, so it is not left sending to sockets closing under it.
    server.terminate()
    await asyncio.to_thread(server.wait)
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=50, help="jobs changed per poll")
    parser.add_argument("--duration", type=float, default=600, help="seconds measured")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_open_files_limit()
    if args.serve:
        serve(args.serve, args.subscribers, args.changes, args.interval)
        return 0
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(port), "--subscribers", str(args.subscribers),
            "--changes", str(args.changes), "--interval", str(args.interval)]  # fmt: skip
    server = subprocess.Popen(argv, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                asyncio.run(stats(port))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        print(f"interval {args.interval:g} s, {args.changes} of {args.subscribers} jobs change "
              f"per poll, measured for {args.duration:g} s")  # fmt: skip
        asyncio.run(run(port, server, args))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
