"""Latency of `job(id)`: a live job, a job the controller forgot, an unknown id.

    PYTHONPATH=. python bench/job_lookup.py --live ID [--forgotten ID] [--rounds 200] [--user U]

The app runs in this process (create_app, snapshot cache and response cache off, so every
request reaches Slurm) over the real local:// transport, as `--user` (the test token map's
alice by default; the command switches to her with runuser, so run it as root). Each lookup is
one GraphQL request through httpx's ASGI transport, timed from the request to the parsed
response; round trips (transport batches) and commands are counted per request.

A forgotten job must be a real one: a job that ended before slurmctld's last clean start (the
local cluster's `stop-ctld` then `start` restarts it with -c) and that slurmdbd recorded.

Leaves out: HTTP over a socket and uvicorn (the ASGI call is in-process), TLS, authentication
other than the static token map, concurrency (one request at a time: latency, not throughput).
Run it against two checkouts (PYTHONPATH) alternately to compare them on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.app import create_app  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.tokens import parse_token_map  # noqa: E402
from tests.support.counting import CountingTransport  # noqa: E402
from transport.local import LocalTransport  # noqa: E402

QUERY = "query($id: String!) { cluster { job(id: $id) { displayId state source } } }"
TOKENS = "alice-token=alice,bob-token=bob"


async def measure(ids: dict[str, str], rounds: int, user: str) -> None:
    transport = CountingTransport(LocalTransport())
    settings = Settings(
        clusters=(("local", "local://"),),
        cache_ttl=0.0,
        response_cache=False,
        tokens=parse_token_map(TOKENS),
    )
    app = create_app(settings, transports={"local": transport})
    headers = {"Authorization": f"Bearer {user}-token"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client,
    ):
        for label, job_id in ids.items():
            body = {"query": QUERY, "variables": {"id": job_id}}
            first = (await client.post("/graphql", json=body, headers=headers)).json()
            assert "errors" not in first, first
            transport.batches.clear()
            took = []
            for _ in range(rounds):
                began = time.perf_counter()
                response = await client.post("/graphql", json=body, headers=headers)
                response.json()
                took.append((time.perf_counter() - began) * 1000)
            cuts = statistics.quantiles(took, n=100)
            print(
                f"{label:9} {job_id:>10}  answer={first['data']['cluster']['job']}\n"
                f"          p50 {cuts[49]:6.1f} ms  p90 {cuts[89]:6.1f} ms  "
                f"mean {statistics.fmean(took):6.1f} ms  "
                f"round trips/request {transport.calls / rounds:.2f}  "
                f"commands/request {transport.commands / rounds:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--live", required=True, help="a job the controller holds")
    parser.add_argument("--forgotten", help="a job only accounting remembers")
    parser.add_argument("--unknown", default="987654321", help="an id nobody knows")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    ids = {"live": args.live, "unknown": args.unknown}
    if args.forgotten:
        ids["forgotten"] = args.forgotten
    asyncio.run(measure(ids, args.rounds, args.user))


if __name__ == "__main__":
    main()
