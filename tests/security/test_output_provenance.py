"""Job.output shows only what a run of the job wrote, never a file someone else put at its path.

The attacks these close: bob plants a file at the output path of alice's pending job in a shared
directory (as /scratch is), and alice, or an administrator reading for her, took bob's text for
her job's output, before the job ran and after (slurmstepd, unable to open bob's file as alice,
fails the launch: the job has started, and the planted file is still there). And a requeued job,
back to waiting, showed a file nothing vouches for any more. Each test runs over local:// and
ssm://, on the real cluster.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import open_inner_transport
from tests.server.test_mutations import RELEASE, REQUEUE, SUBMIT, scancel
from tests.support.head_node import App, as_user, running_app
from tests.support.scenario import slurm, wait_until_ended

pytestmark = pytest.mark.cluster

OUTPUT = "query($id: String!) { cluster { job(id: $id) { state output { text } } } }"
RESULT = "#!/bin/sh\necho alice-result\n"


@pytest.fixture(params=["local", "ssm"])
async def app(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[App]:
    """The app with administrators (carol) allowed to read every user's output."""
    transport = open_inner_transport(request, request.param)
    async with running_app(transport, request.param, admins_read_output=True) as running:
        yield running


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may write in, sticky as /tmp and /scratch are."""
    with tempfile.TemporaryDirectory(prefix="shared-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o1777)
        yield folder


async def submit(app: App, user: str, **fields: Any) -> dict[str, Any]:
    job_input = {"script": RESULT, "partition": "batch", **fields}
    payload = (await app.as_user(user, SUBMIT, input=job_input))["data"]["submitJob"]
    assert payload["__typename"] == "JobSubmitted", payload
    job: dict[str, Any] = payload["job"]
    return job


async def output_of(app: App, user: str, job_id: str) -> dict[str, Any]:
    """The job as `user` reads it; an error fails the test."""
    body = await app.as_user(user, OUTPUT, id=job_id)
    assert "errors" not in body, body
    job: dict[str, Any] = body["data"]["cluster"]["job"]
    return job


async def act(app: App, user: str, query: str, job_id: str, **more: Any) -> None:
    body = await app.as_user(user, query, id=job_id, **more)
    (payload,) = body["data"].values()
    assert payload["__typename"] == "JobActionDone", payload


async def ended(job_id: str) -> str:
    return (await asyncio.to_thread(wait_until_ended, [job_id]))[job_id]


@pytest.mark.parametrize("mode", ["644", "666"])
async def test_a_file_planted_at_a_jobs_path_is_never_its_output(
    app: App, shared: Path, mode: str
) -> None:
    """bob plants a file at the path of alice's pending job in a shared directory: alice and
    carol (an administrator) read null while it waits, and still null once it ran (unable to
    open bob's file, the job failed to launch; or, bob's file being writable by all, it wrote
    into a file bob owns and may rewrite). Never bob's text. alice's job beside it, at a path
    nobody planted, reads its own output, for alice and for carol."""
    target = shared / "result.out"
    job = await submit(app, "alice", hold=True, stdoutPath=str(target))
    control = await submit(app, "alice", stdoutPath=str(shared / "control.out"))
    try:
        as_user("bob", "sh", "-c", 'echo planted-by-bob > "$1" && chmod "$2" "$1"', "-",
                str(target), mode)  # fmt: skip
        for reader in ("alice", "carol"):
            waiting = await output_of(app, reader, job["displayId"])
            assert (waiting["state"], waiting["output"]) == ("PENDING", None), waiting

        await act(app, "alice", RELEASE, job["displayId"])
        state = await ended(str(job["jobId"]))
        # What Slurm did with the planted file, which this test relies on.
        assert state == ("FAILED" if mode == "644" else "COMPLETED"), state
        assert target.owner() == "bob"
        for reader in ("alice", "carol"):
            ran = await output_of(app, reader, job["displayId"])
            assert ran["output"] is None, (reader, ran)

        assert await ended(str(control["jobId"])) == "COMPLETED"
        for reader in ("alice", "carol"):
            mine = await output_of(app, reader, control["displayId"])
            assert mine["output"] == {"text": "alice-result\n"}, (reader, mine)
    finally:
        scancel(job["jobId"])
        scancel(control["jobId"])


async def test_a_requeued_job_shows_no_output_until_its_next_run(app: App, shared: Path) -> None:
    """alice's job ran and is requeued: while it waits again its earlier run's file is not
    shown (nothing vouches for what lies at the path until the next run opens it); once the
    next run has started, alice reads that run's output."""
    script = '#!/bin/sh\necho "run ${SLURM_RESTART_COUNT:-0}"\n'
    job = await submit(app, "alice", script=script, stdoutPath=str(shared / "requeued.out"))
    try:
        assert await ended(str(job["jobId"])) == "COMPLETED"
        first = await output_of(app, "alice", job["displayId"])
        assert first["output"] == {"text": "run 0\n"}, first

        await act(app, "alice", REQUEUE, job["displayId"], hold=True)
        waiting = await output_of(app, "alice", job["displayId"])
        assert waiting["state"] != "COMPLETED" and waiting["output"] is None, waiting
        # Slurm holds a requeued job back two minutes; the test needs no such wait.
        await asyncio.to_thread(
            slurm, "scontrol", "update", f"JobId={job['jobId']}", "StartTime=now"
        )
        await act(app, "alice", RELEASE, job["displayId"])
        assert await ended(str(job["jobId"])) == "COMPLETED"
        second = await output_of(app, "alice", job["displayId"])
        assert second["output"] == {"text": "run 1\n"}, second
    finally:
        scancel(job["jobId"])
