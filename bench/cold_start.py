"""What a Lambda cold start costs in Python: importing `server.lambda_handler` (which builds the
app) in a fresh interpreter, then the first invocation, for a local:// and an ssm:// cluster.

    python bench/cold_start.py [--runs 7]

Each run is a new process, so nothing is warm but the OS file cache. The ssm:// run uses a
placeholder region and credentials: opening the transport makes no AWS call, so it measures
what boto3 adds to the import. The first invocation asks `{ clusters { name } }`, which costs no
command, so no cluster is needed. Median of the runs, and the fastest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys, time
started = time.perf_counter()
import server.lambda_handler as entry
imported = time.perf_counter()
event = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/graphql", "rawQueryString": "",
    "headers": {"content-type": "application/json", "host": "example.com"},
    "requestContext": {"http": {"method": "POST", "path": "/graphql", "sourceIp": "127.0.0.1",
                                "protocol": "HTTP/1.1", "userAgent": "bench"},
                       "requestId": "bench", "stage": "$default"},
    "body": json.dumps({"query": "{ clusters { name } }"}), "isBase64Encoded": False,
}
response = entry.handler(event, None)
answered = time.perf_counter()
assert response["statusCode"] == 200, response
print(json.dumps({
    "import": imported - started,
    "first": answered - imported,
    "modules": len(sys.modules),
    "boto3": "boto3" in sys.modules,
    "prometheus": "prometheus_client" in sys.modules,
}))
"""

CONFIGURATIONS = {
    "local://": {"SLURM_GRAPHQL_CLUSTERS": "local=local://"},
    "ssm://": {
        "SLURM_GRAPHQL_CLUSTERS": "aws=ssm://?cluster=hpc&region=eu-west-1&bucket=out",
        "AWS_ACCESS_KEY_ID": "placeholder",
        "AWS_SECRET_ACCESS_KEY": "placeholder",
    },
    "local://, metrics on": {
        "SLURM_GRAPHQL_CLUSTERS": "local=local://",
        "SLURM_GRAPHQL_METRICS": "true",
    },
}


def measure_once(environ: dict[str, str]) -> dict[str, float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLURM_GRAPHQL_"))}
    # As the SAM template deploys it: metrics off, JSON logs (to /dev/null here).
    env = {**base, "SLURM_GRAPHQL_METRICS": "false", "SLURM_GRAPHQL_LOG_FORMAT": "json", **environ}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, env=env, check=True
    )
    sample: dict[str, float] = json.loads(done.stdout)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.runs} fresh processes each, median (fastest)")
    print(f"{'clusters':<22} {'import':>16} {'first request':>16} {'modules':>8}  heavy imports")
    for environ in CONFIGURATIONS.values():
        measure_once(environ)  # the first run also writes .pyc files
    # Rounds alternate the configurations, so that load from elsewhere hits them alike.
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    for _ in range(args.runs):
        for name, environ in CONFIGURATIONS.items():
            runs[name].append(measure_once(environ))
    for name, samples in runs.items():
        imports = [s["import"] * 1000 for s in samples]
        firsts = [s["first"] * 1000 for s in samples]
        heavy = [m for m in ("boto3", "prometheus") if samples[0][m]] or ["none"]
        print(
            f"{name:<22} {statistics.median(imports):>7.0f} ms ({min(imports):>4.0f})"
            f" {statistics.median(firsts):>7.0f} ms ({min(firsts):>4.0f})"
            f" {samples[0]['modules']:>8}  {', '.join(heavy)}"
        )


if __name__ == "__main__":
    main()
