"""Round trips and wall time over SSM, against a seed-style client doing the same work.

    python bench/ssm.py [--latency 0.3] [--jobs 20000]

Starts moto's S3 and the project's local SSM endpoint (tests/support/aws.py) with every API call
delayed by --latency seconds, then measures:
  (a) the read API's deep query, over the real local cluster (started if not running);
  (b) a listing of 20,000 jobs: the batch prints a synthetic squeue output built from golden
      rows (far over SSM's 24,000 inline characters), read back complete; once with the rows
      repeated (it compresses to fit inline) and once with every job named differently (it
      does not, and is read from S3).
The seed-style client is what the system we replace did: one SendCommand per Slurm command,
GetCommandInvocation every second (time.sleep(1)), and the output read from S3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synthetic import synthetic_squeue  # noqa: E402
from resolvers.slurm.jobs import (  # noqa: E402
    RECORD_SEPARATOR,
    new_boundary,
    parse_squeue,
    squeue_command,
)
from resolvers.slurm.nodes import show_nodes_command  # noqa: E402
from resolvers.slurm.partitions import show_partitions_command  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.support.app import app_client  # noqa: E402
from tests.support.aws import aws_environ, moto_s3_server, ssm_endpoint  # noqa: E402
from transport import Command, open_transport  # noqa: E402
from transport.shell_batch import shell_line  # noqa: E402

INSTANCE = "i-0123456789abcdef0"
BUCKET = "bench-output"
DEEP = "{ clusters { partitions { nodes { jobs { partition { nodes { name } } } } } } }"
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"


def seed_style(commands: list[str]) -> tuple[float, list[str]]:
    """One SendCommand per command, 1 s polling, output from S3: the system we replace."""
    ssm, s3 = boto3.client("ssm"), boto3.client("s3")
    started = time.perf_counter()
    outputs = []
    for command in commands:
        sent = ssm.send_command(
            InstanceIds=[INSTANCE],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [command]},
            OutputS3BucketName=BUCKET,
            OutputS3KeyPrefix="seed",
        )
        command_id = sent["Command"]["CommandId"]
        while True:
            time.sleep(1)
            try:
                status = ssm.get_command_invocation(CommandId=command_id, InstanceId=INSTANCE)
            except ssm.exceptions.InvocationDoesNotExist:
                continue
            if status["Status"] not in ("Pending", "InProgress", "Delayed"):
                break
        if status["Status"] != "Success":
            # A failed command would make both sides' figures meaningless: stop, and say so.
            raise RuntimeError(f"seed-style: {command[:80]!r} ended {status['Status']}")
        key = f"seed/{command_id}/{INSTANCE}/awsrunShellScript/0.awsrunshellscript/stdout"
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            # The agent writes no object for an empty stream (squeue of an empty queue): the
            # output is empty, which the seed's client never handled (it died with NoSuchKey).
            body = b""
        outputs.append(body.decode(errors="replace"))
    ssm.close()
    s3.close()
    return time.perf_counter() - started, outputs


async def ours_deep_query(url: str) -> float:
    transport = open_transport(url)
    try:
        async with app_client(Settings(cache_ttl=0.0), {"local": transport}) as client:
            started = time.perf_counter()
            response = await client.post("/graphql", json={"query": DEEP})
            elapsed = time.perf_counter() - started
            assert "errors" not in response.json(), response.text
            return elapsed
    finally:
        await transport.aclose()


async def ours_listing(url: str, path: str, boundary: str, jobs: int) -> float:
    transport = open_transport(url)
    try:
        started = time.perf_counter()
        [result] = await transport.run([Command(("cat", path))])
        elapsed = time.perf_counter() - started
        assert len(parse_squeue(result.stdout, boundary)) == jobs
        return elapsed
    finally:
        await transport.aclose()


def boundary_of(squeue_line: str) -> str:
    """The boundary a squeue shell line frames its rows with (the end of its --Format)."""
    spec = next(w for w in shlex.split(squeue_line) if w.startswith("--Format="))
    return spec.rsplit(RECORD_SEPARATOR, 1)[1]


def report(
    label: str, ours: tuple[float, dict[str, int]], seed: tuple[float, dict[str, int]]
) -> None:
    (our_time, our_stats), (seed_time, seed_stats) = ours, seed
    print(f"{label}")
    print(f"  slurm-graphql: {our_time:6.2f} s, {our_stats}")
    print(f"  seed-style:    {seed_time:6.2f} s, {seed_stats}")
    print(f"  speed-up:      {seed_time / our_time:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()

    cluster_dir = os.environ.setdefault("LOCAL_CLUSTER_DIR", str(REPO / ".local-cluster"))
    os.environ.setdefault("SLURM_CONF", str(Path(cluster_dir) / "slurm.conf"))
    started_cluster = subprocess.run([LOCAL_CLUSTER, "status"], capture_output=True).returncode != 0
    if started_cluster:
        subprocess.run([LOCAL_CLUSTER, "start"], check=True, capture_output=True)
    try:
        with moto_s3_server() as s3_url, ssm_endpoint(s3_url, latency=args.latency) as endpoint:
            os.environ.update(aws_environ(endpoint.url, s3_url))
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            s3.close()
            url = f"ssm://{INSTANCE}?region=us-east-1&bucket={BUCKET}&timeout=120"
            print(f"SSM endpoint latency per API call: {args.latency * 1000:.0f} ms")

            def stats() -> dict[str, int]:
                counts: dict[str, Any] = endpoint.stats()
                endpoint.reset_stats()
                return {k: v for k, v in counts.items() if v}

            endpoint.reset_stats()
            ours = asyncio.run(ours_deep_query(url)), stats()
            deep_commands = [
                shell_line(show_partitions_command()),
                shell_line(show_nodes_command()),
                shell_line(squeue_command(new_boundary())),
            ]
            seed_time, seed_outputs = seed_style(deep_commands)
            queued = len(parse_squeue(seed_outputs[2], boundary_of(deep_commands[2])))
            report(f"(a) the deep query ({queued:,} jobs in the queue)", ours, (seed_time, stats()))

            for varied in (False, True):
                boundary = new_boundary()
                with tempfile.NamedTemporaryFile("w", suffix=".squeue", delete=False) as listing:
                    listing.write(synthetic_squeue(args.jobs, boundary, varied_names=varied))
                try:
                    size = Path(listing.name).stat().st_size
                    ours = (
                        asyncio.run(ours_listing(url, listing.name, boundary, args.jobs)),
                        stats(),
                    )
                    seed_time, outputs = seed_style([f"cat {listing.name}"])
                    assert len(parse_squeue(outputs[0], boundary)) == args.jobs
                    names = "each job its own name" if varied else "golden rows repeated"
                    label = f"(b) a listing of {args.jobs:,} jobs, {size / 1e6:.1f} MB, {names}"
                    report(label, ours, (seed_time, stats()))
                finally:
                    os.unlink(listing.name)
    finally:
        if started_cluster:
            subprocess.run([LOCAL_CLUSTER, "stop"], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
