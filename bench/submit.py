"""Submit latency and round trips per submit, over local://, on the running local cluster.

    scripts/local-cluster start && scripts/test-users ensure
    SLURM_CONF=.local-cluster/slurm.conf python bench/submit.py [--submits 50]

Runs the app in this process (no HTTP server, so the figure is the API's own cost) and submits
held jobs through `submitJob` as alice, through the token map (each command goes through
runuser; no request acts as the server's own user). For comparison it times plain
`sbatch --hold` the same number of times. Jobs are cancelled afterwards. Targets (issue 4): one
round trip per submit, fetch of the created job included; p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
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

SUBMIT = """mutation($input: SubmitJobInput!) { submitJob(input: $input) { __typename
  ... on JobSubmitted { job { jobId state user } } ... on SubmitRejected { message } } }"""
SCRIPT = "#!/bin/sh\nsleep 60\n"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"


async def api_submits(count: int, token: str) -> tuple[list[float], float, list[int]]:
    transport = CountingTransport(LocalTransport())
    tokens = parse_token_map(f"{token}=alice")
    app = create_app(Settings(tokens=tokens), transports={"local": transport})
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    job_ids: list[int] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
    ):
        for index in range(count):
            variables = {"input": {"script": SCRIPT, "hold": True, "name": f"bench-{index}"}}
            started = time.perf_counter()
            response = await client.post(
                "/graphql", json={"query": SUBMIT, "variables": variables}, headers=headers
            )
            latencies.append(time.perf_counter() - started)
            payload = response.json()["data"]["submitJob"]
            if payload["__typename"] != "JobSubmitted":
                raise SystemExit(f"submit failed: {payload}")
            job_ids.append(payload["job"]["jobId"])
    return latencies, transport.calls / count, job_ids


def sbatch_times(count: int) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    job_ids: list[int] = []
    for _ in range(count):
        started = time.perf_counter()
        out = subprocess.run(
            ["sbatch", "--parsable", "--hold", "--output=/dev/null"],
            input=SCRIPT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        latencies.append(time.perf_counter() - started)
        job_ids.append(int(out.split(";")[0]))
    return latencies, job_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=50)
    count = parser.parse_args().submits
    cancel: list[int] = []
    try:
        plain, ids = sbatch_times(count)
        cancel += ids
        print(f"sbatch --hold (no API)            {percentiles(plain)}")
        for label, token in (("alice (runuser)", "bench-alice-token"),):
            latencies, trips, ids = asyncio.run(api_submits(count, token))
            cancel += ids
            print(
                f"submitJob as {label:<20} {percentiles(latencies)}   round trips/submit {trips:g}"
            )
    finally:
        for start in range(0, len(cancel), 200):
            subprocess.run(["scancel", *map(str, cancel[start : start + 200])], check=False)


if __name__ == "__main__":
    main()
