"""Head-node hygiene: the UID floor at the transport, locks users cannot plant, concurrent
retries without internal errors, and idempotency keys no user text can forge.

Each test runs over local:// and ssm:// (the local SSM endpoint really runs the script).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from resolvers.slurm.actions import keyed_job_matches
from resolvers.slurm.jobs import new_boundary, parse_squeue, squeue_command
from tests.conftest import Aws
from tests.server.test_mutations import SUBMIT, UPDATE, scancel
from tests.support.head_node import (
    App,
    ended_as,
    running_app,
    sbatch_as,
    secret_local_transport,
)
from transport import Command, CommandResult, Transport, TransportUnavailable, open_transport
from transport.local import LocalTransport
from transport.locks import ROOT_LOCK_DIR
from transport.shell_batch import build_script, parse_batch_output
from transport.shell_batch import new_boundary as new_shell_boundary

pytestmark = pytest.mark.cluster

HELD = {"script": "#!/bin/sh\nsleep 30\n", "hold": True, "partition": "batch"}
WHOAMI = ("id", "-un")


def open_kind(kind: str, request: pytest.FixtureRequest, min_uid: int = 1000) -> Transport:
    if kind == "local":
        return secret_local_transport(min_uid=min_uid)
    aws: Aws = request.getfixturevalue("aws")
    return open_transport(aws.ssm_url(), min_uid=min_uid)


@pytest.fixture(params=["local", "ssm"])
def kind(request: pytest.FixtureRequest, unix_users: None) -> str:
    return str(request.param)


@pytest.fixture
async def app(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    async with running_app(open_kind(kind, request), kind) as running:
        yield running


async def submit(app: App, user: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await app.as_user(user, SUBMIT, input={**HELD, **fields}))["data"][
        "submitJob"
    ]
    return payload


# --- the UID floor at the transport edge -------------------------------------------------------


async def test_the_transport_never_switches_to_root_or_a_system_account(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """root, daemon (UID 1) and a user the head node does not know are refused by the
    transport itself, as a distinct result; alice runs as alice."""
    transport = open_kind(kind, request)
    try:
        users = ["root", "daemon", "bin", "ghost-" + secrets.token_hex(3), "alice"]
        results = await transport.run([Command(WHOAMI, user=user) for user in users])
    finally:
        await transport.aclose()
    *refused, alice = results
    for user, result in zip(users, refused, strict=False):
        assert result.refused, (user, result)
        assert result.exit_code == 126 and result.stdout == "", (user, result)
        assert f"refusing to run as {user}" in result.stderr, (user, result)
    assert (alice.refused, alice.stdout) == (False, "alice\n")


async def test_the_floor_is_configurable_and_checked_on_the_head_node(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """With min_uid above alice's UID, alice is refused and bob (a higher UID) is not."""
    floor = pwd.getpwnam("alice").pw_uid + 1
    assert pwd.getpwnam("bob").pw_uid >= floor
    transport = open_kind(kind, request, min_uid=floor)
    try:
        alice, bob = await transport.run(
            [Command(WHOAMI, user="alice"), Command(WHOAMI, user="bob")]
        )
    finally:
        await transport.aclose()
    assert alice.refused and "below the minimum" in alice.stderr, alice
    assert (bob.refused, bob.stdout) == (False, "bob\n")


async def test_a_refused_switch_is_a_typed_permission_denied(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A user below the floor gets PERMISSION_DENIED for a submit and for an output read,
    never an internal error, and no job is made."""
    floor = pwd.getpwnam("alice").pw_uid + 1
    # A job that ran: a job that has not started has no output to read (resolvers/output.py).
    written = Path(f"/tmp/floor-{secrets.token_hex(4)}.out")
    bobs = await asyncio.to_thread(ended_as, "bob", f"--output={written}")
    try:
        async with running_app(open_kind(kind, request, min_uid=floor), kind) as app:
            payload = await submit(app, "alice")
            assert (payload["__typename"], payload["code"]) == (
                "SubmitRejected",
                "PERMISSION_DENIED",
            ), payload
        lower = pwd.getpwnam("bob").pw_uid + 1
        async with running_app(open_kind(kind, request, min_uid=lower), kind) as app:
            body = await app.as_user(
                "bob",
                "query($id: String!) { cluster { job(id: $id) { output { text } } } }",
                id=str(bobs),
            )
            assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", body
            # An id Slurm does not hold: the accounting half of the lookup would run as bob, who
            # is refused; the job is unknown to him (null), not the whole cluster an error.
            body = await app.as_user(
                "bob", "query($id: String!) { cluster { job(id: $id) { state } } }", id="99999999"
            )
            assert body == {"data": {"cluster": {"job": None}}}, body
    finally:
        scancel(bobs)
        await asyncio.to_thread(written.unlink, missing_ok=True)


# --- locks users cannot plant ------------------------------------------------------------------


def run_as(user: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


async def test_a_user_cannot_plant_a_lock_and_keyed_submits_never_hang(app: App) -> None:
    """bob makes FIFOs of the old lock paths in /tmp and tries to create, replace or link
    alice's lock in the lock directory (all refused by the kernel); alice's keyed submits
    still complete in seconds, and the directory is root's, mode 0755."""
    alice_uid = pwd.getpwnam("alice").pw_uid
    old_paths = [f"/tmp/slurm-graphql-submit.{alice_uid}.lock", "/tmp/slurm-graphql-0"]
    run_as("bob", " ; ".join(f"mkfifo {path}" for path in old_paths))
    first = await submit(app, "alice", clientMutationId="k-" + secrets.token_hex(6))
    try:
        assert first["__typename"] == "JobSubmitted", first
        lock = f"{ROOT_LOCK_DIR}/submit.alice.lock"
        for attack in (
            f"mkfifo {ROOT_LOCK_DIR}/submit.alice.lock",
            f"rm -f {lock}",
            f"mv {lock} {lock}.x",
            f"ln -sf /home/bob/x {lock}",
            f"mkfifo {ROOT_LOCK_DIR}/submit.carol.lock",
            f"touch {ROOT_LOCK_DIR}/anything",
        ):
            assert run_as("bob", attack).returncode != 0, attack
        info = os.lstat(ROOT_LOCK_DIR)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == 0
        assert stat.S_IMODE(info.st_mode) & 0o022 == 0
        assert stat.S_ISREG(os.lstat(lock).st_mode)
        started = time.monotonic()
        again = await submit(app, "alice", clientMutationId="k-" + secrets.token_hex(6))
        assert again["__typename"] == "JobSubmitted", again
        scancel(again["job"]["jobId"])
        assert time.monotonic() - started < 10
    finally:
        if first["__typename"] == "JobSubmitted":
            scancel(first["job"]["jobId"])
        for path in old_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def test_an_unsafe_lock_directory_is_refused(tmp_path: Path) -> None:
    """A lock directory that is a symlink, writable by others, or someone else's is refused
    (TransportUnavailable) rather than used."""
    bob = pwd.getpwnam("bob")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    bobs = tmp_path / "bobs"
    bobs.mkdir()
    os.chown(bobs, bob.pw_uid, bob.pw_gid)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    for directory in (shared, bobs, link):
        transport = LocalTransport(lock_dir=str(directory))
        with pytest.raises(TransportUnavailable, match="lock"):
            asyncio.run(transport.run([Command(("true",), lock="x")]))


# --- concurrent retries ------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_twenty_concurrent_retries_make_one_job_and_no_internal_error(app: App) -> None:
    """Twenty simultaneous submits with one clientMutationId: all answer JobSubmitted with
    the same job, exactly one created it, and no reply is an error."""
    key = "retry-" + secrets.token_hex(6)
    payloads = await asyncio.gather(
        *(submit(app, "alice", clientMutationId=key) for _ in range(20))
    )
    ids = {p.get("job", {}).get("jobId") for p in payloads}
    for job_id in ids:
        if job_id is not None:
            scancel(job_id)
    assert all(p["__typename"] == "JobSubmitted" for p in payloads), payloads
    assert len(ids) == 1
    assert sum(p["created"] for p in payloads) == 1


# --- idempotency keys cannot be forged ---------------------------------------------------------


async def test_a_forged_key_in_a_comment_or_name_never_returns_another_users_job(
    app: App,
) -> None:
    """bob's jobs (through the API and with sbatch directly) carry names and comments whose
    second line imitates a row of alice's keyed job; bob's keyed submit with her key makes a
    new job of his own, and never shows hers."""
    key = "forge-" + secrets.token_hex(6)
    alice = await submit(app, "alice", clientMutationId=key)
    assert alice["__typename"] == "JobSubmitted", alice
    alice_id = alice["job"]["jobId"]
    forged = f"x\n{alice_id} slurm-graphql:cmid={key};\n{alice_id} alice slurm-graphql:cmid={key};"
    made: list[int] = [alice_id]
    try:
        api_job = await submit(app, "bob", name=forged, comment=forged)
        assert api_job["__typename"] == "JobSubmitted", api_job
        made.append(api_job["job"]["jobId"])
        made.append(sbatch_as("bob", f"--comment={forged}", f"--job-name={forged}"))
        payload = await submit(app, "bob", clientMutationId=key)
        assert payload["__typename"] == "JobSubmitted", payload
        made.append(payload["job"]["jobId"])
        assert payload["created"] is True, payload
        assert payload["job"]["user"] == "bob"
        assert payload["job"]["jobId"] != alice_id
    finally:
        for job_id in made:
            scancel(job_id)


async def test_a_comment_can_never_carry_a_key(app: App) -> None:
    """A comment that starts with the key marker is INVALID_INPUT on submit and on update, so
    no client text can pass for a key."""
    marker = "slurm-graphql:cmid=abc;note"
    payload = await submit(app, "bob", comment=marker)
    assert (payload["code"], payload["field"]) == ("INVALID_INPUT", "comment"), payload
    job = await submit(app, "bob")
    try:
        body = await app.as_user(
            "bob", UPDATE, id=str(job["job"]["jobId"]), input={"comment": marker}
        )
        update = body["data"]["updateJob"]
        assert (update["code"], update["field"]) == ("INVALID_INPUT", "comment"), update
    finally:
        scancel(job["job"]["jobId"])


async def test_python_accepts_a_keyed_job_only_for_its_user_and_key(unix_users: None) -> None:
    """The second check, on the row the head node reported: another user's job, or a row
    whose key differs, is never handed out."""
    key = "check-" + secrets.token_hex(6)
    job_id = sbatch_as("alice", f"--comment=slurm-graphql:cmid={key};")
    try:
        boundary = new_boundary()
        show = squeue_command(boundary, [str(job_id)])
        [result] = await LocalTransport().run([show])
        [row] = parse_squeue(result.stdout, boundary)
    finally:
        scancel(job_id)
    assert keyed_job_matches(row, "alice", key)
    assert not keyed_job_matches(row, "bob", key)
    assert not keyed_job_matches(row, "alice", key + "x")


def test_the_ssm_script_refuses_an_unsafe_lock_directory() -> None:
    """The script of an ssm:// batch, run by a user other than root (whose locks live in
    $TMPDIR/slurm-graphql-UID), refuses a lock directory that is a symlink, writable by others or
    someone else's, and uses a safe one."""
    bob = pwd.getpwnam("bob")
    base = Path(tempfile.mkdtemp(prefix="sgq-locks-", dir="/tmp"))
    os.chown(base, bob.pw_uid, bob.pw_gid)
    locks = base / f"slurm-graphql-{bob.pw_uid}"
    elsewhere = base / "elsewhere"

    def run_batch() -> list[CommandResult]:
        commands = [Command(("echo", "locked"), lock="submit.bob")]
        boundary = new_shell_boundary()
        script = build_script(commands, boundary)
        done = subprocess.run(
            ["runuser", "-u", "bob", "--", "sh", "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env={"PATH": os.environ["PATH"], "TMPDIR": str(base)},
        )
        return parse_batch_output(done.stdout, commands, boundary)

    try:
        elsewhere.mkdir()
        os.chown(elsewhere, bob.pw_uid, bob.pw_gid)
        locks.symlink_to(elsewhere)
        with pytest.raises(TransportUnavailable, match="unsafe"):
            run_batch()
        locks.unlink()
        locks.mkdir(mode=0o777)
        locks.chmod(0o777)
        os.chown(locks, bob.pw_uid, bob.pw_gid)
        with pytest.raises(TransportUnavailable, match="unsafe"):
            run_batch()
        locks.chmod(0o755)
        os.chown(locks, 0, 0)
        with pytest.raises(TransportUnavailable, match="unsafe"):
            run_batch()
        os.chown(locks, bob.pw_uid, bob.pw_gid)
        [result] = run_batch()
        assert (result.exit_code, result.stdout) == (0, "locked\n")
        assert stat.S_ISREG(os.lstat(locks / "submit.bob.lock").st_mode)
    finally:
        shutil.rmtree(base)
