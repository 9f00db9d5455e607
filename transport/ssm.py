"""`ssm://` — reach a head node through AWS Systems Manager Run Command.

    ssm://i-0123456789abcdef0?region=eu-west-1&bucket=my-output&prefix=slurm-graphql
    ssm://?cluster=NAME&region=eu-west-1        the running head node of a ParallelCluster
    …&pass_env=AWS_REGION,HTTPS_PROXY           more variables for commands (never secrets)

A batch is one `AWS-RunShellScript` invocation (transport/shell_batch.py builds the script), so a
read query costs one SendCommand however many Slurm commands it needs. Polling starts after
100 ms and grows to 1 s under the batch's deadline. The service keeps only 24,000 characters of
stdout inline. The batch's output is gzip+base64 on the head node, so most batches fit; larger
ones are read whole from S3 when a bucket is configured, and are never parsed truncated.

Commands run under `env -i` with the allow-list of transport/environment.py taken from the
agent's shell, and switch only to users whose UID on the head node is at least `min_uid`.

boto3 runs in worker threads with the standard retry mode; endpoints, region and credentials
come from boto3's own configuration (AWS_ENDPOINT_URL_SSM, …), with no special path for tests.
botocore's errors are translated here and never leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions

from transport.base import DEFAULT_MIN_UID, Command, CommandResult, url_options
from transport.environment import parse_pass_env, passable_names
from transport.errors import (
    HeadNodeNotFound,
    OutputTooLarge,
    RequestTooLarge,
    TransportError,
    TransportThrottled,
    TransportTimeout,
    TransportUnavailable,
    UnsafeParameter,
)
from transport.shell_batch import (
    build_script,
    checked_parameters,
    new_boundary,
    parse_batch_output,
)

INLINE_STDOUT_LIMIT = 24_000
# SendCommand's document and its runtime parameters together may not exceed 64 KB (AWS documents
# the quota with CreateDocument's Content: "This quota also includes the content specified for
# input parameters at runtime"). AWS-RunShellScript's own content is about 1 KB; the script gets
# 56 KiB, and the rest is left to the document and executionTimeout.
SCRIPT_BUDGET = 56 * 1024
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONCURRENCY = 8
FIRST_POLL, MAX_POLL, POLL_GROWTH = 0.1, 1.0, 1.5
_INSTANCE = re.compile(r"^(i|mi)-[0-9a-f]{8,17}\Z")
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}
_GONE = {"InvalidInstanceId", "InvalidInstanceInformationFilterValue"}
_SIZING = "0" * len(new_boundary())  # a boundary of the real one's length, to size a script
T = TypeVar("T")
logger = logging.getLogger("slurm_graphql.ssm")


class SsmTransport:
    def __init__(
        self,
        *,
        region: str,
        instance_id: str | None = None,
        cluster: str | None = None,
        bucket: str | None = None,
        prefix: str = "slurm-graphql",
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        session: boto3.session.Session | None = None,
        pass_env: Sequence[str] = (),
        min_uid: int = DEFAULT_MIN_UID,
    ) -> None:
        if (instance_id is None) == (cluster is None):
            raise ValueError("ssm:// needs either an instance id or ?cluster=NAME")
        self.region, self.bucket, self.prefix = region, bucket, prefix.strip("/")
        self.timeout = timeout
        self.pass_env = passable_names(pass_env)
        self.min_uid = max(1, min_uid)  # root is never a user to switch to
        self._cluster = cluster
        self._instance_id = instance_id
        self._slots = asyncio.Semaphore(concurrency)
        session = session or boto3.session.Session(region_name=region)
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=max(10, concurrency * 2),
        )
        self._ssm = session.client("ssm", config=config)
        self._s3 = session.client("s3", config=config)
        self._ec2 = session.client("ec2", config=config) if cluster else None

    @property
    def url(self) -> str:
        target = self._instance_id if self._cluster is None else f"?cluster={self._cluster}"
        return f"ssm://{target}"

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        """The batch in one SendCommand, or in several, run at once, when its script would
        exceed SCRIPT_BUDGET (a history page reading 10,000 jobs by id: ten sacct of 1,000 ids,
        ~117 KB); RequestTooLarge, nothing sent, when one command alone exceeds it."""
        if not commands:
            return []
        deadline = time.monotonic() + self.timeout
        parts = parts_within(commands, self._script_bytes, SCRIPT_BUDGET)
        if len(parts) == 1:
            return await self._run_part(commands, deadline)
        logger.info("a batch of %d commands is sent in %d parts", len(commands), len(parts))
        answers = await asyncio.gather(*(self._run_part(part, deadline) for part in parts))
        return [result for answer in answers for result in answer]

    def _script_bytes(self, commands: Sequence[Command]) -> int:
        script = build_script(commands, _SIZING, pass_env=self.pass_env, min_uid=self.min_uid)
        return len(script.encode())

    async def _run_part(self, commands: Sequence[Command], deadline: float) -> list[CommandResult]:
        boundary = new_boundary()
        script = build_script(commands, boundary, pass_env=self.pass_env, min_uid=self.min_uid)
        async with self._slots:
            for attempt in (1, 2):
                instance = await self._instance()
                try:
                    printed = await self._invoke(instance, script, deadline)
                    break
                except TransportUnavailable:
                    # A replaced head node: look it up again once, then give up.
                    if self._cluster is None or attempt == 2:
                        raise
                    self._instance_id = None
        return parse_batch_output(printed, commands, boundary)

    async def aclose(self) -> None:
        for client in (self._ssm, self._s3, self._ec2):
            if client is not None:
                client.close()

    async def _instance(self) -> str:
        if self._instance_id is not None:
            return self._instance_id
        assert self._ec2 is not None
        assert self._cluster is not None
        answer = await self._call(
            self._ec2.describe_instances,
            Filters=[
                {"Name": "tag:parallelcluster:cluster-name", "Values": [self._cluster]},
                {"Name": "tag:parallelcluster:node-type", "Values": ["HeadNode"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ],
        )
        found = [i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]]
        if not found:
            raise HeadNodeNotFound(f"no running head node found for cluster {self._cluster!r}")
        self._instance_id = sorted(found)[0]
        return self._instance_id

    async def _invoke(self, instance: str, script: str, deadline: float) -> str:
        remaining = max(1, int(deadline - time.monotonic()))
        try:
            # The last check before the service resolves `{{…}}` in what we send.
            parameters = checked_parameters(
                {"commands": [script], "executionTimeout": [str(remaining)]}
            )
        except UnsafeParameter as exc:
            logger.warning("a batch for %s was not sent: %s", instance, exc)
            raise
        output: dict[str, Any] = {}
        if self.bucket:
            output = {"OutputS3BucketName": self.bucket, "OutputS3KeyPrefix": self.prefix}
        sent = await self._call(
            self._ssm.send_command,
            InstanceIds=[instance],
            DocumentName="AWS-RunShellScript",
            Parameters=parameters,
            Comment="slurm-graphql batch",
            **output,
        )
        command_id: str = sent["Command"]["CommandId"]
        invocation = await self._wait(command_id, instance, deadline)
        printed: str = invocation.get("StandardOutputContent", "")
        if len(printed) < INLINE_STDOUT_LIMIT:
            return printed
        if not self.bucket:
            raise OutputTooLarge(
                f"the batch printed {len(printed):,}+ characters, more than SSM returns inline; "
                "add ?bucket=NAME to the ssm:// URL so the full output is read from S3"
            )
        key = "/".join(
            p for p in (self.prefix, command_id, instance, "awsrunShellScript",
                        "0.awsrunshellscript", "stdout") if p
        )  # fmt: skip
        try:
            data = await self._call(self._read_object, Bucket=self.bucket, Key=key)
        except TransportError as exc:
            raise OutputTooLarge(
                f"the batch's output was cut inline and its full copy could not be read from "
                f"s3://{self.bucket}/{key} ({exc}); check the head node's write access to it"
            ) from exc
        return data.decode("ascii", errors="replace")

    def _read_object(self, *, Bucket: str, Key: str) -> bytes:  # noqa: N803 - boto3's names
        # The body is read inside the same thread and the same error translation as the call.
        body: bytes = self._s3.get_object(Bucket=Bucket, Key=Key)["Body"].read()
        return body

    async def _wait(self, command_id: str, instance: str, deadline: float) -> dict[str, Any]:
        delay = FIRST_POLL
        while True:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                await self._cancel(command_id)
                raise TransportTimeout(f"the head node did not answer within {self.timeout:g} s")
            delay = min(delay * POLL_GROWTH, MAX_POLL)
            try:
                invocation = await self._call(
                    self._ssm.get_command_invocation, CommandId=command_id, InstanceId=instance
                )
            except _NotYet:
                continue  # eventually consistent: the invocation is not visible yet
            status = invocation["Status"]
            # Cancelling is on its way to Cancelled: not an outcome yet.
            if status in ("Pending", "InProgress", "Delayed", "Cancelling"):
                continue
            if status == "Success":
                return dict(invocation)
            detail = invocation.get("StatusDetails", status)
            if status == "TimedOut":
                raise TransportTimeout(f"the batch timed out on the head node ({detail})")
            if status in ("Undeliverable", "Terminated") or detail in ("Undeliverable",):
                raise TransportUnavailable(f"the head node {instance} is not reachable ({detail})")
            if status == "Failed":
                stderr = invocation.get("StandardErrorContent", "").strip()[-500:]
                code = invocation.get("ResponseCode")
                raise TransportError(f"the batch failed on the head node (code {code}): {stderr}")
            raise TransportError(f"the batch ended as {status} ({detail})")

    async def _cancel(self, command_id: str) -> None:
        with contextlib.suppress(TransportError):  # best effort: the deadline has passed anyway
            await self._call(self._ssm.cancel_command, CommandId=command_id)

    async def _call(self, method: Callable[..., T], **kwargs: Any) -> T:
        """Call boto3 in a thread and translate every botocore error at this edge."""
        try:
            return await asyncio.to_thread(method, **kwargs)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "InvocationDoesNotExist":
                raise _NotYet from exc
            if code in _THROTTLED:
                raise TransportThrottled(f"AWS throttled {method.__name__} after retries") from exc
            if code in _GONE:
                raise TransportUnavailable(f"the head node is not available: {message}") from exc
            raise TransportError(f"AWS refused {method.__name__}: {code}: {message}") from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise TransportUnavailable("no AWS credentials found") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise TransportUnavailable(f"AWS could not be reached: {exc}") from exc


def parts_within(
    commands: Sequence[Command], size: Callable[[Sequence[Command]], int], budget: int
) -> list[Sequence[Command]]:
    """`commands` cut into consecutive parts, in order, each as long as `size` (of a part's
    script, which grows with each command) keeps within `budget`: the whole batch when it fits.
    RequestTooLarge when a command alone does not fit."""
    parts: list[Sequence[Command]] = []
    start = 0
    while start < len(commands):
        if size(commands[start:]) <= budget:
            parts.append(commands[start:])
            break
        if size(commands[start : start + 1]) > budget:
            raise RequestTooLarge(
                f"a command of {size(commands[start : start + 1]):,} bytes of script is more "
                f"than one SendCommand carries ({budget:,}); it was not sent"
            )
        low, high = start + 1, len(commands) - 1  # commands[start:low] fits; [start:] does not
        while low < high:
            middle = (low + high + 1) // 2
            if size(commands[start:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        parts.append(commands[start:low])
        start = low
    return parts


class _NotYet(Exception):
    """GetCommandInvocation does not know the invocation yet."""


def open_ssm(url: str, *, min_uid: int = DEFAULT_MIN_UID) -> SsmTransport:
    """An SsmTransport for a URL, checked at start-up: form, region and credentials."""
    parts = urlsplit(url)
    allowed = {"region", "bucket", "prefix", "cluster", "timeout", "concurrency", "pass_env"}
    options = url_options(parts.query, allowed)
    instance = parts.netloc or None
    if parts.path not in ("", "/"):
        raise ValueError(f"ssm:// takes an instance id, not a path: {url!r}")
    if instance is not None and not _INSTANCE.match(instance):
        raise ValueError(f"{instance!r} is not an EC2 instance id (i-0123456789abcdef0)")
    if (instance is None) == ("cluster" not in options):
        raise ValueError("ssm:// needs an instance id (ssm://i-…) or ?cluster=NAME, not both")
    session = boto3.session.Session(region_name=options.get("region"))
    region = session.region_name
    if not region:
        raise ValueError("ssm:// needs a region: ?region=eu-west-1 or AWS_DEFAULT_REGION")
    known = set(session.get_available_regions("ssm")) | set(
        session.get_available_regions("ssm", partition_name="aws-us-gov")
    )
    if region not in known:
        raise ValueError(f"unknown AWS region {region!r} for SSM")
    if session.get_credentials() is None:
        raise ValueError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
            "or run with an instance or task role"
        )
    return SsmTransport(
        region=region,
        instance_id=instance,
        cluster=options.get("cluster"),
        bucket=options.get("bucket"),
        prefix=options.get("prefix", "slurm-graphql"),
        timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
        concurrency=int(options.get("concurrency", DEFAULT_CONCURRENCY)),
        session=session,
        pass_env=parse_pass_env(options.get("pass_env")),
        min_uid=min_uid,
    )
