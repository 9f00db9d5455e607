"""Local stand-ins for AWS in tests and demos: moto's server and an SSM endpoint that runs commands.

moto serves S3 and EC2 but its SSM executes nothing, so SSM comes from `tests.support.ssm_endpoint`,
which runs each command on this machine and writes its output to moto's S3. Both run as real
processes on free loopback ports and are stopped by PID, and `aws_environ()` gives the variables
that make an unmodified boto3 (and so the code under test) talk to them instead of AWS.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.server import free_port, running_process

REPO = Path(__file__).resolve().parents[2]
# Loopback only: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url: str, payload: Mapping[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    with _OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's server (S3, EC2 and the rest) on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running_process(argv, f"{url}/moto-api/", None):
        yield url


@dataclass(frozen=True)
class SsmEndpoint:
    """A running `tests.support.ssm_endpoint`: its URL, PID, and its test-only routes."""

    url: str
    pid: int

    def stats(self) -> dict[str, int]:
        """API calls received so far, per action (throttled and failed calls included)."""
        counts: dict[str, int] = _request(f"{self.url}/_stats")
        return counts

    def reset_stats(self) -> None:
        _request(f"{self.url}/_stats/reset", {})

    def faults(self) -> dict[str, Any]:
        current: dict[str, Any] = _request(f"{self.url}/_faults")
        return current

    def set_faults(
        self,
        *,
        throttle: int | None = None,
        unknown_instances: Sequence[str] | None = None,
        undeliverable: bool | None = None,
        s3_failure: bool | None = None,
        latency: float | None = None,
    ) -> dict[str, Any]:
        """Change the faults given (the others stay as they are); returns them all."""
        changes = {
            "throttle": throttle,
            "unknown_instances": list(unknown_instances) if unknown_instances is not None else None,
            "undeliverable": undeliverable,
            "s3_failure": s3_failure,
            "latency": latency,
        }
        current: dict[str, Any] = _request(
            f"{self.url}/_faults", {k: v for k, v in changes.items() if v is not None}
        )
        return current

    def clear_faults(self) -> None:
        self.set_faults(
            throttle=0, unknown_instances=[], undeliverable=False, s3_failure=False, latency=0.0
        )


@contextmanager
def ssm_endpoint(
    s3_url: str | None,
    *,
    region: str = "us-east-1",
    instances: Sequence[str] | None = None,
    visibility_delay: float | None = None,
    latency: float | None = None,
    throttle: int = 0,
    unknown_instances: Sequence[str] = (),
    undeliverable: bool = False,
    s3_failure: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Iterator[SsmEndpoint]:
    """The SSM endpoint on a free loopback port, uploading output to `s3_url` (moto).

    The options are its command-line flags; `environ` is added to the environment its commands
    run in (SLURM_CONF, for one).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "tests.support.ssm_endpoint", "--port", str(port)]
    argv += ["--region", region]
    if s3_url is not None:
        argv += ["--s3-endpoint", s3_url]
    if instances is not None:
        argv += ["--instances", ",".join(instances)]
    if visibility_delay is not None:
        argv += ["--visibility-delay", str(visibility_delay)]
    if latency is not None:
        argv += ["--latency", str(latency)]
    if throttle:
        argv += ["--throttle", str(throttle)]
    if unknown_instances:
        argv += ["--unknown-instances", ",".join(unknown_instances)]
    if undeliverable:
        argv.append("--undeliverable")
    if s3_failure:
        argv.append("--s3-failure")
    with running_process(argv, f"{url}/_health", environ) as pid:
        yield SsmEndpoint(url, pid)


def aws_environ(
    ssm_url: str, s3_url: str, ec2_url: str | None = None, region: str = "us-east-1"
) -> dict[str, str]:
    """What boto3 needs to use these endpoints: EC2 defaults to `s3_url` (moto serves both)."""
    return {
        "AWS_ENDPOINT_URL_SSM": ssm_url,
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_ENDPOINT_URL_EC2": ec2_url or s3_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


# Secrets in the SSM endpoint's own environment, as an agent's could hold: every ssm:// test
# then also runs its commands next to them, and tests/security checks none reaches a command.
AGENT_SECRETS = {
    "SLURM_GRAPHQL_TOKENS": "agent-secret-token=root:admin",
    "AWS_SECRET_ACCESS_KEY": "agent-secret-aws-key",
    "AWS_SESSION_TOKEN": "agent-secret-session-token",
}


def s3_environ(s3_url: str, region: str = "us-east-1") -> dict[str, str]:
    """What the head node's AWS CLI needs to reach moto's S3 (scripts submitted from S3)."""
    return {
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
