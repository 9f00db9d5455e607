"""No secret ever reaches a command, and output reads open only regular files, never as root.

The attack these close: bob submits a job with `stdoutPath: "/proc/self/environ"` and reads
`Job.output`, which returned the server's environment (every token). The jobs run first (output
is read only once a job has started); those whose path slurmstepd cannot open fail to launch,
and have started all the same. Each test runs over local://
(the server's environment holding SERVER_SECRETS) and ssm:// (the agent's holding AGENT_SECRETS).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from server.lambda_app import make_handler
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import BUCKET, Aws
from tests.server.test_mutations import SUBMIT, scancel
from tests.support.head_node import (
    SECRET_VALUES,
    TOKENS,
    App,
    ended_as,
    leaked,
    running_app,
    secret_local_transport,
)
from tests.support.lambda_events import KINDS, LambdaRuntime, event, response_body
from tests.support.scenario import wait_until_ended
from transport import Command, Transport, open_transport
from transport.environment import FIXED, INHERITED
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

HELD = {"script": "#!/bin/sh\ntrue\n", "hold": True, "partition": "batch"}
OUTPUT = """query($id: String!) { cluster { job(id: $id) { stdoutPath output { text } } } }"""
HEAD_NODE_AWS_CLI = "/opt/slurm-graphql/aws-cli/bin/aws"
S3_PASS_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")


def transport_for(kind: str, aws: Aws | None, **options: Any) -> Transport:
    if kind == "local":
        return secret_local_transport(**options)
    assert aws is not None
    extra = "&pass_env=" + ",".join(S3_PASS_ENV)
    return open_transport(aws.ssm_url() + extra)


@pytest.fixture(params=["local", "ssm"])
async def app(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[App]:
    """The app, with administrators allowed to read output, over each transport."""
    aws: Aws | None = request.getfixturevalue("aws") if request.param == "ssm" else None
    transport = transport_for(request.param, aws, pass_env=S3_PASS_ENV)
    async with running_app(
        transport, request.param, admins_read_output=True, aws_cli=HEAD_NODE_AWS_CLI
    ) as running:
        yield running


@dataclass
class Traps:
    """Paths in bob's home for jobs to write to, each to be swapped, once its job has run, for
    something an output read should not open: a FIFO, a directory, and symlinks to the
    server's environment, /etc/shadow and /dev/zero. (Planted after the run, as bob could do:
    slurmstepd would block opening a FIFO itself, and output is read only once a job started.)"""

    paths: dict[str, str]
    owner: pwd.struct_passwd

    def plant(self) -> None:
        for name, text in self.paths.items():
            path = Path(text)
            path.unlink(missing_ok=True)  # what the job wrote
            if name == "fifo":
                os.mkfifo(path)
            elif name == "directory":
                path.mkdir()
            else:
                path.symlink_to(SWAPPED_FOR[name])
            os.lchown(path, self.owner.pw_uid, self.owner.pw_gid)


SWAPPED_FOR = {
    "to-environ": "/proc/self/environ",
    "to-shadow": "/etc/shadow",
    "to-zero": "/dev/zero",
}


@pytest.fixture
def bob_traps() -> Iterator[Traps]:
    bob = pwd.getpwnam("bob")
    home = Path(bob.pw_dir)
    tag = secrets.token_hex(4)
    names = ("fifo", "to-environ", "to-shadow", "to-zero", "directory")
    traps = Traps({name: str(home / f"trap-{tag}-{name}") for name in names}, bob)
    try:
        yield traps
    finally:
        for text in traps.paths.values():
            path = Path(text)
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


async def submit(app: App, user: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await app.as_user(user, SUBMIT, input={**HELD, **fields}))["data"][
        "submitJob"
    ]
    assert payload["__typename"] == "JobSubmitted", payload
    job: dict[str, Any] = payload["job"]
    return job


async def ended(app: App, user: str, paths: list[str]) -> dict[str, dict[str, Any]]:
    """A job of `user` per output path, run to its end (output is read only once a job has
    started): one that could not open its path ended as a launch failure, having started."""
    # Submitted at once: one after another, each waited for its own round trip (~0.5 s by ssm://).
    submitted = await asyncio.gather(
        *(submit(app, user, hold=False, stdoutPath=path) for path in paths)
    )
    jobs = dict(zip(paths, submitted, strict=True))
    await asyncio.to_thread(wait_until_ended, [str(job["jobId"]) for job in jobs.values()])
    return jobs


async def read_output(app: App, user: str, job_id: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    body = await app.as_user(user, OUTPUT, id=job_id)
    return body, time.monotonic() - started


FORBIDDEN_PATHS = (
    "/proc/self/environ",
    "/proc/1/environ",
    "/proc/self/../self/environ",
    "/proc/no-such-process/environ",
    "/tmp/../proc/self/environ",
    "/dev/zero",
    "/dev/no-such-device",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/no/such/file",
)


async def test_kernel_paths_and_special_files_are_refused_without_a_leak(
    app: App, bob_traps: Traps
) -> None:
    """bob's outputs at /proc, /sys, /dev paths (existing or not), a FIFO, a directory and
    symlinks to /proc/self/environ, /etc/shadow and /dev/zero: every read is PERMISSION_DENIED
    with the same message shape, quickly (a FIFO never blocks), and shows no secret."""
    paths = [*FORBIDDEN_PATHS, *bob_traps.paths.values()]
    jobs = await ended(app, "bob", paths)
    bob_traps.plant()
    try:
        # Read at once, each timed on its own: a read that blocks still takes its 10 s.
        reads = await asyncio.gather(
            *(read_output(app, "bob", job["displayId"]) for job in jobs.values())
        )
        for path, (body, took) in zip(jobs, reads, strict=True):
            assert not leaked(str(body)), (path, body)
            assert took < 10, (path, took)
            assert body["data"]["cluster"]["job"]["output"] is None, (path, body)
            [error] = body["errors"]
            assert error["extensions"]["code"] == "PERMISSION_DENIED", (path, error)
            assert error["message"] == f"not allowed to read {path}", (path, error)
    finally:
        for job in jobs.values():
            scancel(job["jobId"])


async def test_an_administrator_reads_output_as_the_owner_not_as_root(
    app: App, bob_traps: Traps
) -> None:
    """carol (an administrator allowed to read output) reads bob's output pointing at
    /etc/shadow with bob's rights, so she is refused; a job of root's is never read at all."""
    [job] = (await ended(app, "bob", [bob_traps.paths["to-shadow"]])).values()
    bob_traps.plant()
    # root's job ran, and its output file exists (a harmless one: it runs as root).
    root_file = Path(f"/tmp/root-{secrets.token_hex(4)}.out")
    root_job = await asyncio.to_thread(ended_as, "root", f"--output={root_file}")
    try:
        assert await asyncio.to_thread(root_file.is_file)
        body, _ = await read_output(app, "carol", job["displayId"])
        assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", body
        assert "root:" not in str(body)
        root_body, _ = await read_output(app, "carol", str(root_job))
        assert root_body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", root_body
        assert root_body["data"]["cluster"]["job"]["output"] is None
    finally:
        scancel(job["jobId"])
        scancel(root_job)
        await asyncio.to_thread(root_file.unlink, missing_ok=True)


async def test_a_job_script_sees_no_secret_in_its_environment(app: App) -> None:
    """A job that prints its whole environment into its output shows no secret of the server
    or the agent."""
    script = "#!/bin/sh\nenv\ncat /proc/$$/environ | tr '\\0' '\\n'\n"
    body = await app.as_user("alice", SUBMIT, input={"script": script, "partition": "batch"})
    job = body["data"]["submitJob"]["job"]
    try:
        for _ in range(150):
            read = await app.as_user(
                "alice",
                """query($id: String!) { cluster { job(id: $id) { state output
                { text } } } }""",
                id=job["displayId"],
            )
            found = read["data"]["cluster"]["job"]
            if found["state"] == "COMPLETED" and found["output"] is not None:
                break
            await asyncio.sleep(0.2)
        text = found["output"]["text"]
        assert "PATH=" in text, text
        assert not leaked(text), text
        assert "SLURM_GRAPHQL_TOKENS" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    finally:
        scancel(job["jobId"])


ENV_PROGRAM = ("sh", "-c", "env; tr '\\0' '\\n' </proc/$$/environ")
# What runuser adds for the user it switches to.
RUNUSER_ADDS = {"HOME", "USER", "LOGNAME", "SHELL"}


@pytest.mark.parametrize("kind", ["local", "ssm"])
async def test_commands_run_in_an_allow_listed_environment(kind: str, request: Any) -> None:
    """A command's environment (as `env` and its own /proc/PID/environ show it), as the
    server's user and as alice, holds only allow-listed names and no secret value."""
    aws: Aws | None = request.getfixturevalue("aws") if kind == "ssm" else None
    request.getfixturevalue("unix_users")
    transport = transport_for(kind, aws)
    try:
        results = await transport.run(
            [Command(ENV_PROGRAM), Command(ENV_PROGRAM, user="alice", env={"EXTRA": "1"})]
        )
    finally:
        await transport.aclose()
    allowed = set(INHERITED) | set(FIXED) | set(S3_PASS_ENV) | RUNUSER_ADDS | {"PWD", "EXTRA"}
    for result in results:
        assert result.ok, result
        assert not leaked(result.stdout), result.stdout
        names = {line.split("=", 1)[0] for line in result.stdout.splitlines() if "=" in line}
        assert names <= allowed, names - allowed
    assert "EXTRA=1" in results[1].stdout


async def test_a_script_from_s3_is_never_fetched_with_the_servers_credentials(
    app: App,
) -> None:
    """bob has no AWS credentials of his own: fetching his script fails as a typed
    INVALID_INPUT, although the server's (and agent's) environment holds working keys."""
    key = f"scripts/{secrets.token_hex(6)}.sh"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"#!/bin/sh\ntrue\n")
    s3.close()
    body = await app.as_user(
        "bob", SUBMIT, input={"scriptS3Uri": f"s3://{BUCKET}/{key}", "hold": True}
    )
    payload = body["data"]["submitJob"]
    if payload["__typename"] == "JobSubmitted":
        scancel(payload["job"]["jobId"])
    assert (payload["code"], payload["field"]) == ("INVALID_INPUT", "scriptS3Uri"), payload
    assert "credentials" in payload["message"].lower(), payload


@pytest.mark.parametrize(
    "name",
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "SLURM_GRAPHQL_TOKENS",
        "SLURM_GRAPHQL_JWT_SECRET",
        "MY_API_TOKEN",
        "LD_PRELOAD",
        "bad-name",
    ],
)
def test_secrets_can_never_be_named_for_commands(name: str, aws: Aws) -> None:
    """`?pass_env=` refuses, at start-up, any name that may hold a secret or change how
    programs load, on every transport."""
    with pytest.raises(ValueError, match=r"never passed|not an environment variable"):
        open_transport(f"local://?pass_env=PATH,{name}")
    with pytest.raises(ValueError, match=r"never passed|not an environment variable"):
        open_transport(aws.ssm_url() + f"&pass_env={name}")
    with pytest.raises(ValueError, match=r"never passed|not an environment variable"):
        LocalTransport(pass_env=[name])


def test_the_secret_markers_are_really_there(aws: Aws) -> None:
    """The premise of this file: the environments these tests run next to hold the secrets."""
    assert all(SECRET_VALUES)
    endpoint_environ = Path(f"/proc/{aws.endpoint.pid}/environ").read_bytes().decode()
    assert "agent-secret-aws-key" in endpoint_environ


@pytest.mark.parametrize("kind", KINDS)
def test_through_the_lambda_handler_proc_environ_is_refused(kind: str, unix_users: None) -> None:
    """The observed attack through each Lambda event kind: bob's output at /proc/self/environ
    is PERMISSION_DENIED and the response holds no secret of the function's environment."""
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS))
    transport = secret_local_transport()
    runtime = LambdaRuntime(lambda: make_handler(settings, {"local": transport}))
    # It ran (slurmstepd could not open the path: a launch failure): output is read only once
    # a job has started.
    job_id = ended_as("bob", "--output=/proc/self/environ")
    try:
        request = event(
            kind,
            "POST",
            "/graphql",
            headers={"Content-Type": "application/json", "Authorization": "Bearer bob-token"},
            body=json.dumps({"query": OUTPUT, "variables": {"id": str(job_id)}}).encode(),
        )
        response = runtime.invoke(request)
        text = response_body(response).decode()
        body = json.loads(text)
    finally:
        scancel(job_id)
        runtime.close()
    assert not leaked(text), text
    assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", body
