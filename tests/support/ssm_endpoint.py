"""A local AWS-SSM-compatible endpoint that really runs the commands it is sent.

moto's SSM accepts SendCommand but executes nothing, so a client of Run Command could only be
tested against canned answers. This server speaks the protocol botocore speaks to
`ssm.<region>.amazonaws.com` (AWS JSON 1.1: `POST /` with `X-Amz-Target: AmazonSSM.<Action>`, any
signature accepted), so boto3 uses it unchanged through `AWS_ENDPOINT_URL_SSM` or `endpoint_url`.
Like the SSM agent, it runs each invocation of `AWS-RunShellScript` as `/bin/sh <script file>` on
this machine (one run per instance id, in a new session so the process group can be killed), and
uploads the complete stdout/stderr to S3 (moto) under the key layout AWS uses. It also keeps a
Parameter Store (tests/support/parameter_store.py) and, like Run Command, resolves
`{{ssm:NAME}}` and `{{ssm-secure:NAME}}` in SendCommand's parameters before running anything.

It copies what a client of the real service can notice: invocations are invisible for a moment
after SendCommand (eventual consistency), inline output is truncated to 24,000/8,000 characters,
TimedOut and Cancelled kill the process group, parameters over the 64 KB document quota are
refused, errors come back as HTTP 400 `{"__type": ...}`.
Faults (throttling, unknown instances, undeliverable invocations, failing S3, latency) are set
with CLI flags or at run time with `POST /_faults`; `GET /_stats` counts the API calls.

    python -m tests.support.ssm_endpoint --port PORT --s3-endpoint URL [--host 127.0.0.1]
        [--region us-east-1] [--instances ID,ID] [--visibility-delay 0.2] [--latency 0]
        [--throttle N] [--unknown-instances ID,ID] [--undeliverable] [--s3-failure]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import tempfile
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import uvicorn
from botocore.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.parameter_store import ParameterStore, ParameterStoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("ssm_endpoint")

DOCUMENT = "AWS-RunShellScript"
PLUGIN = "aws:runShellScript"
PLUGIN_KEY = "awsrunShellScript/0.awsrunshellscript"  # the agent's folder for plugin 0
STDOUT_LIMIT, STDERR_LIMIT, PLUGIN_OUTPUT_LIMIT = 24_000, 8_000, 2_500
QUOTA = 64 * 1024  # a document's content with its run-time parameters
INSTANCE_ID = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")
MAX_EXECUTION_TIMEOUT = 172_800  # AWS-RunShellScript's allowed maximum (48 hours)
TERMINAL = frozenset({"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable"})
AMZ_JSON = "application/x-amz-json-1.1"
NO_CLOUDWATCH = {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}
NO_NOTIFICATION = {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""}


class ApiError(Exception):
    """An AWS error: botocore turns `__type` into `ClientError.response["Error"]["Code"]`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Faults:
    throttle: int = 0  # the next N API calls answer ThrottlingException
    unknown_instances: list[str] = field(default_factory=list)
    undeliverable: bool = False
    s3_failure: bool = False
    latency: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply the fields present in `changes`, checking each one's type first."""
        checks: dict[str, Callable[[Any], bool]] = {
            "throttle": lambda v: type(v) is int and v >= 0,
            "unknown_instances": lambda v: (
                isinstance(v, list) and all(isinstance(i, str) for i in v)
            ),
            "undeliverable": lambda v: type(v) is bool,
            "s3_failure": lambda v: type(v) is bool,
            "latency": lambda v: type(v) in (int, float) and v >= 0,
        }
        for name, value in changes.items():
            if name not in checks or not checks[name](value):
                raise ValueError(f"bad fault {name}={value!r}")
        for name, value in changes.items():
            setattr(self, name, float(value) if name == "latency" else value)


@dataclass
class Command:
    command_id: str
    instance_ids: list[str]
    parameters: dict[str, list[str]]
    comment: str
    bucket: str
    prefix: str
    script: str  # the commands joined with newlines, as the agent writes _script.sh
    execution_timeout: int
    timeout_seconds: int  # SendCommand's delivery timeout: only echoed
    requested: float  # epoch seconds
    visible_at: float  # time.monotonic() from which its invocations can be seen

    def key(self, instance_id: str, stream: str) -> str:
        # The agent joins these with Go's path.Join: no leading slash for an empty prefix.
        parts = (self.prefix, self.command_id, instance_id, PLUGIN_KEY, stream)
        return posixpath.normpath("/".join(p for p in parts if p))


@dataclass
class Invocation:
    command: Command
    instance_id: str
    status: str = "Pending"
    details: str = "Pending"
    response_code: int = -1
    started: float | None = None
    ended: float | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdout_url: str = ""
    stderr_url: str = ""
    process: asyncio.subprocess.Process | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)

    def text(self, stream: bytearray, limit: int | None = None) -> str:
        return bytes(stream).decode("utf-8", errors="replace")[:limit]


def iso_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def iso_duration(seconds: float) -> str:
    """Java's Duration.toString(), which the service uses: PT0.085S, PT1M5.2S."""
    hours, rest = divmod(round(seconds * 1000), 3_600_000)
    minutes, millis = divmod(rest, 60_000)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if millis or not (hours or minutes):
        text += f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "S"
    return text


def plugin_output(stdout: str, stderr: str, capacity: int = PLUGIN_OUTPUT_LIMIT) -> str:
    """The agent's TruncateOutput: stdout, then stderr under a title, within `capacity`."""
    cut_out, cut_err = "\n---Output truncated---", "\n---Error truncated----"
    title = "\n----------ERROR-------\n" if stderr else ""
    space = capacity - len(title)
    if len(stdout) + len(stderr) < space:
        return stdout + title + stderr
    if len(stdout) > space // 2 and len(stderr) > space // 2:
        half = (space - len(cut_err) - len(cut_out)) // 2
        return stdout[:half] + cut_out + title + stderr[:half] + cut_err
    if len(stdout) < space // 2:
        return stdout + title + stderr[: space - len(cut_err) - len(stdout)] + cut_err
    return stdout[: space - len(cut_out) - len(stderr)] + cut_out + title + stderr


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def pump(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    while stream is not None and (chunk := await stream.read(65_536)):
        sink.extend(chunk)


class RunCommandService:
    """The service's state: commands, their invocations (one per instance), faults and stats."""

    def __init__(
        self,
        *,
        region: str,
        s3_endpoint: str | None,
        instances: frozenset[str] | None,
        visibility_delay: float,
        faults: Faults,
    ) -> None:
        self.region = region
        self.instances = instances
        self.visibility_delay = visibility_delay
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self.commands: dict[str, Command] = {}
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.parameter_store = ParameterStore(region)
        self.workdir = Path(tempfile.mkdtemp(prefix="ssm-endpoint-"))
        self.s3: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name=region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )
        self.actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "SendCommand": self.send_command,
            "GetCommandInvocation": self.get_command_invocation,
            "ListCommandInvocations": self.list_command_invocations,
            "CancelCommand": self.cancel_command,
            "PutParameter": self.parameter_store.put_parameter,
            "GetParameter": self.parameter_store.get_parameter,
            "DeleteParameter": self.parameter_store.delete_parameter,
        }

    # --- the API -------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        service, _, action = request.headers.get("x-amz-target", "").partition(".")
        self.stats[action or "(none)"] += 1
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        try:
            if service != "AmazonSSM" or action not in self.actions:
                raise ApiError("UnknownOperationException", f"unknown operation {action!r}")
            if self.faults.latency:
                await asyncio.sleep(self.faults.latency)
            if self.faults.throttle > 0:
                self.faults.throttle -= 1
                raise ApiError("ThrottlingException", "Rate exceeded")
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise ApiError("SerializationException", "the body is not a JSON object")
            result = await self.actions[action](body)
        except (ApiError, ParameterStoreError) as error:
            content = {"__type": error.code, "message": error.message}
            return JSONResponse(content, 400, headers=headers, media_type=AMZ_JSON)
        return JSONResponse(result, headers=headers, media_type=AMZ_JSON)

    async def send_command(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("DocumentName") != DOCUMENT:
            raise ApiError("InvalidDocument", f"document {body.get('DocumentName')} not found")
        instance_ids = body.get("InstanceIds") or []
        if not instance_ids:
            raise ApiError("InvalidParameters", "InstanceIds must name at least one instance")
        if len(set(instance_ids)) != len(instance_ids):
            raise ApiError("DuplicateInstanceId", "an instance id is given twice")
        for instance_id in instance_ids:
            self.check_instance(instance_id)
        parameters = body.get("Parameters") or {}
        self.check_parameters(parameters)
        # What the agent receives: every value with its parameter references resolved.
        resolved = {
            name: [self.parameter_store.resolve(value) for value in values]
            for name, values in parameters.items()
        }
        commands, execution_timeout = self.check_parameters(resolved)
        now = time.time()
        timeout_seconds = int(body.get("TimeoutSeconds", 3600))
        command = Command(
            command_id=str(uuid.uuid4()),
            instance_ids=list(instance_ids),
            parameters=resolved,
            comment=body.get("Comment", ""),
            bucket=body.get("OutputS3BucketName", ""),
            prefix=body.get("OutputS3KeyPrefix", ""),
            script="\n".join(commands),
            execution_timeout=execution_timeout,
            timeout_seconds=timeout_seconds,
            requested=now,
            visible_at=time.monotonic() + self.visibility_delay,
        )
        self.commands[command.command_id] = command
        for instance_id in instance_ids:
            invocation = Invocation(command, instance_id)
            self.invocations[command.command_id, instance_id] = invocation
            if self.faults.undeliverable:
                invocation.status = invocation.details = "Undeliverable"
            else:
                task = asyncio.create_task(self.run(invocation))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return {
            "Command": {
                "CommandId": command.command_id,
                "DocumentName": DOCUMENT,
                "DocumentVersion": "$DEFAULT",
                "Comment": command.comment,
                "ExpiresAfter": now + timeout_seconds,
                "Parameters": parameters,
                "InstanceIds": command.instance_ids,
                "Targets": [],
                "RequestedDateTime": now,
                "Status": "Pending",
                "StatusDetails": "Pending",
                "OutputS3Region": self.region,
                "OutputS3BucketName": command.bucket,
                "OutputS3KeyPrefix": command.prefix,
                "MaxConcurrency": body.get("MaxConcurrency", "50"),
                "MaxErrors": body.get("MaxErrors", "0"),
                "TargetCount": len(instance_ids),
                "CompletedCount": 0,
                "ErrorCount": 0,
                "DeliveryTimedOutCount": 0,
                "ServiceRole": "",
                "NotificationConfig": NO_NOTIFICATION,
                "CloudWatchOutputConfig": NO_CLOUDWATCH,
                "TimeoutSeconds": timeout_seconds,
            }
        }

    def check_instance(self, instance_id: Any) -> None:
        known = self.instances is None or instance_id in self.instances
        if (
            not isinstance(instance_id, str)
            or not INSTANCE_ID.match(instance_id)
            or not known
            or instance_id in self.faults.unknown_instances
        ):
            raise ApiError("InvalidInstanceId", f"Instance {instance_id} is not a managed node")

    @staticmethod
    def check_parameters(parameters: Any) -> tuple[list[str], int]:
        def bad(why: str) -> ApiError:
            return ApiError("InvalidParameters", f"document {DOCUMENT}: {why}")

        if not isinstance(parameters, dict):
            raise bad("Parameters must be a map")
        unknown = set(parameters) - {"commands", "executionTimeout", "workingDirectory"}
        if unknown:
            raise bad(f"unknown parameters {sorted(unknown)}")
        for name, values in parameters.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise bad(f"{name} must be a list of strings")
        commands: list[str] = parameters.get("commands", [])
        if not commands:
            raise bad("commands is required")
        # AWS counts a document's content and the parameters given at run time against one
        # 64 KB quota (CreateDocument's Content); the parameters alone over it are refused
        # whatever the document. Which error the service answers then is not documented: this
        # one is the endpoint's.
        if sum(len(v.encode()) for values in parameters.values() for v in values) > QUOTA:
            raise bad(f"the parameters exceed the {QUOTA:,}-byte document quota")
        timeout = parameters.get("executionTimeout", ["3600"])
        if len(timeout) != 1 or not re.fullmatch(r"[1-9][0-9]*", timeout[0]):
            raise bad("executionTimeout must be one whole number of seconds")
        if int(timeout[0]) > MAX_EXECUTION_TIMEOUT:
            raise bad(f"executionTimeout is at most {MAX_EXECUTION_TIMEOUT}")
        return commands, int(timeout[0])

    def find(self, command_id: Any, instance_id: Any) -> Invocation:
        """The invocation as the eventually consistent service shows it, else an error."""
        if instance_id in self.faults.unknown_instances:
            raise ApiError("InvalidInstanceId", f"Instance {instance_id} is not a managed node")
        invocation = self.invocations.get((command_id, instance_id))
        if invocation is None or time.monotonic() < invocation.command.visible_at:
            raise ApiError("InvocationDoesNotExist", "")
        return invocation

    async def get_command_invocation(self, body: dict[str, Any]) -> dict[str, Any]:
        plugin = body.get("PluginName")
        invocation = self.find(body.get("CommandId"), body.get("InstanceId"))
        if plugin is not None and plugin != PLUGIN:
            raise ApiError("InvalidPluginName", f"no plugin {plugin} in {DOCUMENT}")
        done = invocation.status in TERMINAL
        started, ended = invocation.started, invocation.ended
        elapsed = (ended if done and ended else time.time()) - started if started else None
        # The service shows the output only once the invocation is over.
        stdout = invocation.text(invocation.stdout, STDOUT_LIMIT) if done else ""
        stderr = invocation.text(invocation.stderr, STDERR_LIMIT) if done else ""
        return {
            "CommandId": invocation.command.command_id,
            "InstanceId": invocation.instance_id,
            "Comment": invocation.command.comment,
            "DocumentName": DOCUMENT,
            "DocumentVersion": "$DEFAULT",
            "PluginName": PLUGIN,
            "ResponseCode": invocation.response_code,
            "ExecutionStartDateTime": iso_time(started),
            "ExecutionElapsedTime": iso_duration(elapsed) if elapsed is not None else "",
            "ExecutionEndDateTime": iso_time(ended) if done else "",
            "Status": invocation.status,
            "StatusDetails": invocation.details,
            "StandardOutputContent": stdout,
            "StandardOutputUrl": invocation.stdout_url,
            "StandardErrorContent": stderr,
            "StandardErrorUrl": invocation.stderr_url,
            "CloudWatchOutputConfig": NO_CLOUDWATCH,
        }

    async def list_command_invocations(self, body: dict[str, Any]) -> dict[str, Any]:
        command_id, instance_id = body.get("CommandId"), body.get("InstanceId")
        now = time.monotonic()
        rows = [
            invocation
            for (cid, iid), invocation in self.invocations.items()
            if command_id in (None, cid)
            and instance_id in (None, iid)
            and now >= invocation.command.visible_at
        ]
        rows.sort(key=lambda i: i.command.requested, reverse=True)
        return {"CommandInvocations": [self.summary(i, bool(body.get("Details"))) for i in rows]}

    def summary(self, invocation: Invocation, details: bool) -> dict[str, Any]:
        command = invocation.command
        done = invocation.status in TERMINAL
        row: dict[str, Any] = {
            "CommandId": command.command_id,
            "InstanceId": invocation.instance_id,
            "InstanceName": "",
            "Comment": command.comment,
            "DocumentName": DOCUMENT,
            "DocumentVersion": "$DEFAULT",
            "RequestedDateTime": command.requested,
            "Status": invocation.status,
            "StatusDetails": invocation.details,
            "TraceOutput": "",
            "StandardOutputUrl": invocation.stdout_url,
            "StandardErrorUrl": invocation.stderr_url,
            "ServiceRole": "",
            "NotificationConfig": NO_NOTIFICATION,
            "CloudWatchOutputConfig": NO_CLOUDWATCH,
        }
        if details:
            output = plugin_output(
                invocation.text(invocation.stdout), invocation.text(invocation.stderr)
            )
            folder = posixpath.dirname(command.key(invocation.instance_id, ""))
            plugin: dict[str, Any] = {
                "Name": PLUGIN,
                "Status": invocation.status,
                "StatusDetails": invocation.details,
                "ResponseCode": invocation.response_code,
                "Output": output if done else "",
                "StandardOutputUrl": invocation.stdout_url,
                "StandardErrorUrl": invocation.stderr_url,
                "OutputS3Region": self.region,
                "OutputS3BucketName": command.bucket,
                "OutputS3KeyPrefix": folder if command.bucket else "",
            }
            if invocation.started is not None:
                plugin["ResponseStartDateTime"] = invocation.started
            if done and invocation.ended is not None:
                plugin["ResponseFinishDateTime"] = invocation.ended
            row["CommandPlugins"] = [plugin]
        return row

    async def cancel_command(self, body: dict[str, Any]) -> dict[str, Any]:
        command = self.commands.get(body.get("CommandId", ""))
        if command is None:
            raise ApiError("InvalidCommandId", f"no command {body.get('CommandId')}")
        instance_ids = body.get("InstanceIds") or command.instance_ids
        for instance_id in instance_ids:
            if instance_id not in command.instance_ids:
                raise ApiError("InvalidInstanceId", f"{instance_id} is not a target of the command")
        for instance_id in instance_ids:
            invocation = self.invocations[command.command_id, instance_id]
            if invocation.status not in TERMINAL:
                invocation.status = invocation.details = "Cancelling"
                invocation.cancel.set()
        return {}

    # --- running an invocation, as the agent does -------------------------------------------

    async def run(self, invocation: Invocation) -> None:
        command = invocation.command
        folder = self.workdir / command.command_id / invocation.instance_id
        folder.mkdir(parents=True)
        script = folder / "_script.sh"
        script.write_text(command.script)
        cwd = (command.parameters.get("workingDirectory") or [""])[0] or "/tmp"
        env = {**os.environ, "AWS_SSM_INSTANCE_ID": invocation.instance_id}
        env["AWS_SSM_REGION_NAME"] = self.region
        try:
            if invocation.cancel.is_set():
                await self.finish(invocation, "Cancelled", "Cancelled", -1)
                return
            try:
                process = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    str(script),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as error:  # a missing workingDirectory, for one
                invocation.stderr.extend(f"failed to run commands: {error}".encode())
                invocation.started = time.time()
                await self.finish(invocation, "Failed", "Failed", 1)
                return
            invocation.process = process
            invocation.started = time.time()
            if not invocation.cancel.is_set():
                invocation.status = invocation.details = "InProgress"
            outcome = await self.wait(invocation, process)
            await self.finish(invocation, *outcome)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def wait(
        self, invocation: Invocation, process: asyncio.subprocess.Process
    ) -> tuple[str, str, int]:
        """Wait for the end of the script and of its output, for a cancel, or for the timeout."""
        finished = asyncio.gather(
            pump(process.stdout, invocation.stdout),
            pump(process.stderr, invocation.stderr),
            process.wait(),
        )
        cancelled = asyncio.ensure_future(invocation.cancel.wait())
        either: set[asyncio.Future[Any]] = {finished, cancelled}
        try:
            timeout = invocation.command.execution_timeout
            await asyncio.wait(either, timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            stopped = not finished.done()
            if stopped:
                kill_group(process.pid)
                # What the group wrote before it died is still in the pipes: read it, unless a
                # process that left the group keeps them open.
                await asyncio.wait({finished}, timeout=2)
                finished.cancel()
                await asyncio.wait({finished})
        code = await process.wait()
        if stopped:
            if invocation.cancel.is_set():
                return "Cancelled", "Cancelled", -1
            return "TimedOut", "ExecutionTimedOut", -1
        return ("Success", "Success", 0) if code == 0 else ("Failed", "Failed", code)

    async def finish(self, invocation: Invocation, status: str, details: str, code: int) -> None:
        """Upload the output (before the status turns terminal, as the agent does), then end."""
        invocation.ended = time.time()
        command = invocation.command
        if command.bucket and not self.faults.s3_failure:
            urls = await asyncio.gather(
                self.upload(command, invocation.instance_id, "stdout", bytes(invocation.stdout)),
                self.upload(command, invocation.instance_id, "stderr", bytes(invocation.stderr)),
            )
            if all(urls):
                invocation.stdout_url, invocation.stderr_url = urls
        invocation.status, invocation.details, invocation.response_code = status, details, code

    async def upload(self, command: Command, instance_id: str, stream: str, data: bytes) -> str:
        key = command.key(instance_id, stream)
        if data:  # the agent writes no object for an empty stream
            try:
                await asyncio.to_thread(
                    self.s3.put_object, Bucket=command.bucket, Key=key, Body=data
                )
            except Exception as error:  # the invocation completes all the same, without URLs
                log.warning("upload to s3://%s/%s failed: %s", command.bucket, key, error)
                return ""
        return f"https://s3.{self.region}.amazonaws.com/{command.bucket}/{key}"

    async def close(self) -> None:
        """Kill the process groups still running, end the runners, drop temporary files."""
        for invocation in self.invocations.values():
            if invocation.process is not None and invocation.status not in TERMINAL:
                kill_group(invocation.process.pid)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.s3.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def create_app(endpoint: RunCommandService) -> Starlette:
    async def get_faults(request: Request) -> Response:
        return JSONResponse(asdict(endpoint.faults))

    async def set_faults(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("a JSON object is expected")
            endpoint.faults.update(changes)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse(asdict(endpoint.faults))

    async def stats(request: Request) -> Response:
        return JSONResponse(dict(endpoint.stats))

    async def reset_stats(request: Request) -> Response:
        endpoint.stats.clear()
        return JSONResponse({})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await endpoint.close()

    routes = [
        Route("/", endpoint.handle, methods=["POST"]),
        Route("/_faults", get_faults, methods=["GET"]),
        Route("/_faults", set_faults, methods=["POST"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_stats/reset", reset_stats, methods=["POST"]),
        Route("/_health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    def ids(text: str) -> list[str]:
        return [i.strip() for i in text.split(",") if i.strip()]

    parser = argparse.ArgumentParser(
        prog="python -m tests.support.ssm_endpoint", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL for command output (moto)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--instances", type=ids, help="the only instance ids that exist")
    parser.add_argument("--visibility-delay", type=float, default=0.2)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--throttle", type=int, default=0, help="throttle the next N calls")
    parser.add_argument("--unknown-instances", type=ids, default=[])
    parser.add_argument("--undeliverable", action="store_true")
    parser.add_argument("--s3-failure", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="ssm_endpoint: %(message)s")
    faults = Faults(
        throttle=args.throttle,
        unknown_instances=args.unknown_instances,
        undeliverable=args.undeliverable,
        s3_failure=args.s3_failure,
        latency=args.latency,
    )
    endpoint = RunCommandService(
        region=args.region,
        s3_endpoint=args.s3_endpoint,
        instances=frozenset(args.instances) if args.instances is not None else None,
        visibility_delay=args.visibility_delay,
        faults=faults,
    )
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown, which runs endpoint.close().
    uvicorn.run(
        create_app(endpoint),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
