"""job(id) in ONE round trip whether the controller holds the job or has forgotten it: squeue
as before, carrying a sacct (as the requester) that the transport runs only if squeue printed no
row (Command.otherwise; resolvers/recall.py). On the real cluster with slurmdbd, over local://
and ssm://; a `sacct` first on the commands' PATH counts the sacct processes really started.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from resolvers.slurm.history import HistoryQuery, history_command, parse_history
from resolvers.slurm.jobs import new_boundary
from server.app import create_app
from server.settings import Settings
from tests.conftest import Aws
from tests.support.app import cluster_job
from tests.support.counting import CountingTransport
from tests.support.live import PurgingTransport
from tests.support.scenario import (
    dead_port,
    has_accounting,
    internals_in,
    sbatch,
    slurm,
    unreachable_slurmdbd,
    wait_for_state,
)
from tests.support.squeue_counter import SqueueCounter
from tests.support.visibility import own_settings
from transport import Command, Transport, open_transport
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

JOB = """query($id: String!) { cluster { job(id: $id) {
  displayId jobId user state exitCode source name steps { stepId state } } } }"""

MISSING = "987654321"


@dataclass(frozen=True)
class Jobs:
    tag: str
    ended: str  # alice's, finished and in slurmdbd; the tests play Slurm forgetting it
    live: str  # alice's, running for the module's tests


@pytest.fixture(scope="module")
def jobs(unix_users: None) -> Iterator[Jobs]:
    """alice's ended job (in accounting) and a live one."""
    if not has_accounting():
        pytest.skip("the cluster under test has no slurmdbd (LOCAL_CLUSTER_ACCOUNTING=0)")
    tag = f"recall-{uuid.uuid4().hex[:8]}"
    ended = sbatch("-J", tag, "--wrap", "exit 3", user="alice")
    live = sbatch("-J", tag, "--wrap", "sleep 600", user="alice")
    try:
        wait_for_state(ended, "FAILED", timeout=90)
        deadline = time.monotonic() + 60
        # slurmdbd hears of the end a moment later; a step heard of before its job makes a
        # placeholder job row named "allocation" until the job's own record replaces it (1 run
        # in 4 here): wait for the job's record, as the tests compare with it.
        while (accounting_says("alice", ended) or {}).get("name") != tag:
            assert time.monotonic() < deadline, "slurmdbd did not record the job within 60 s"
            time.sleep(0.5)
        yield Jobs(tag, ended, live)
    finally:
        slurm("scancel", live)


def accounting_says(user: str, job_id: str) -> dict[str, Any] | None:
    """The job as sacct itself prints it to `user` (as the API asks it: job rows and steps)."""
    now = int(time.time())
    boundary = new_boundary()
    command = history_command(HistoryQuery(now - 3600, now + 60, job_ids=(job_id,)), boundary)
    done = subprocess.run(
        ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in command.env.items()),
         *command.argv],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for record in parse_history(done.stdout, boundary):
        if str(record.job_id) == job_id and record.end_time:
            return {
                "displayId": record.display_id,
                "jobId": record.job_id,
                "user": record.user,
                "state": record.state,
                "exitCode": record.exit_code,
                "name": record.name,
                "steps": [{"stepId": s.step_id, "state": s.state} for s in record.steps],
            }
    return None


@dataclass
class App:
    client: httpx.AsyncClient
    transport: CountingTransport
    sacct: SqueueCounter

    async def job(self, user: str, job_id: str) -> Any:
        return await cluster_job(self.client, JOB, user, job_id)

    def commands(self) -> list[Command]:
        return [command for batch in self.transport.sent for command in batch]


@pytest.fixture(params=["local", "ssm"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def app_over(
    request: pytest.FixtureRequest, kind: str, settings: Settings, jobs: Jobs
) -> AsyncIterator[App]:
    """The app over the real cluster, `jobs.ended` purged, with sacct runs counted."""
    counter = SqueueCounter("sacct")
    if kind == "local":
        inner: Transport = LocalTransport(environ={**os.environ, **counter.path_environ()})
    else:
        # The SSM endpoint runs commands with the server's environment, PATH included.
        aws: Aws = request.getfixturevalue("aws")
        inner = open_transport(aws.ssm_url())
    purging = PurgingTransport(inner)
    purging.purge(jobs.ended)
    transport = CountingTransport(purging)
    app = create_app(settings, transports={"local": transport})
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://localhost"
            ) as client,
        ):
            yield App(client, transport, counter)
    finally:
        await inner.aclose()
        counter.close()


@pytest.fixture
async def everyone(request: pytest.FixtureRequest, kind: str, jobs: Jobs) -> AsyncIterator[App]:
    async for app in app_over(request, kind, own_settings(job_visibility="all"), jobs):
        yield app


@pytest.fixture
async def own(request: pytest.FixtureRequest, kind: str, jobs: Jobs) -> AsyncIterator[App]:
    async for app in app_over(request, kind, own_settings(), jobs):
        yield app


def counted(app: App, kind: str) -> int | None:
    """sacct processes started, where the PATH wrapper sees them (local://; the SSM endpoint
    runs with its own PATH, and there the program's output tells, see the tests)."""
    return len(app.sacct.runs()) if kind == "local" else None


async def test_a_live_job_is_one_round_trip_without_sacct(
    everyone: App, kind: str, jobs: Jobs
) -> None:
    """A job the controller holds: one round trip, one command, no sacct process."""
    found = await everyone.job("alice", jobs.live)
    assert (found["displayId"], found["source"]) == (jobs.live, "SLURMCTLD")
    assert everyone.transport.calls == 1
    [squeue] = everyone.commands()
    assert squeue.argv[0] == "squeue" and squeue.user is None  # no switch of user, as before
    assert counted(everyone, kind) in (0, None)


async def test_a_forgotten_job_is_one_round_trip_answered_as_sacct(
    everyone: App, kind: str, jobs: Jobs
) -> None:
    """A job the controller forgot: ONE round trip (one command, one sacct process), and the
    answer is what sacct prints."""
    found = await everyone.job("alice", jobs.ended)
    assert found["source"] == "ACCOUNTING"
    del found["source"]
    assert found == accounting_says("alice", jobs.ended)
    assert (everyone.transport.calls, everyone.transport.commands) == (1, 1)
    assert counted(everyone, kind) in (1, None)


async def test_an_unknown_id_is_one_round_trip_and_null(everyone: App, kind: str) -> None:
    """An id neither Slurm nor accounting knows: null after one round trip."""
    assert await everyone.job("alice", MISSING) is None
    assert (everyone.transport.calls, everyone.transport.commands) == (1, 1)


async def test_bob_never_reads_alices_forgotten_job(own: App, kind: str, jobs: Jobs) -> None:
    """Under `own`, bob asking for alice's forgotten job gets null, in one round trip, and his
    sacct is asked for his own jobs only (never --allusers, never alice)."""
    assert await own.job("bob", jobs.ended) is None
    assert await own.job("bob", jobs.live) is None
    assert own.transport.calls == 2
    for command in own.commands():
        assert command.otherwise is not None and command.otherwise.user == "bob"
        sacct = command.otherwise.argv
        assert sacct[0] == "sacct" and "--user=bob" in sacct
        assert "--allusers" not in sacct and not any("alice" in arg for arg in sacct)
    assert (await own.job("alice", jobs.ended))["user"] == "alice"  # hers, to her


async def test_an_accounting_answer_never_serves_another_user(
    request: pytest.FixtureRequest, kind: str, jobs: Jobs
) -> None:
    """With the snapshot cache on, alice's lookup answered from accounting is cached for her
    alone: bob's lookup of the same id within the TTL runs his own command (as bob), and under
    `own` gets null."""
    settings = own_settings(cache_ttl=60.0)
    async for app in app_over(request, kind, settings, jobs):
        assert (await app.job("alice", jobs.ended))["source"] == "ACCOUNTING"
        assert (await app.job("alice", jobs.ended))["source"] == "ACCOUNTING"
        assert app.transport.calls == 1  # her second lookup: her cached answer
        assert await app.job("bob", jobs.ended) is None
        assert app.transport.calls == 2


@pytest.mark.parametrize("hostile", ["1;rm -rf /", "$(id)", "42\n43", "4" * 10_240, "-1"])
async def test_hostile_ids_are_refused_before_anything_runs(everyone: App, hostile: str) -> None:
    """Ids that are not Slurm's are BAD_USER_INPUT, and nothing runs on the head node."""
    response = await everyone.client.post(
        "/graphql",
        json={"query": JOB, "variables": {"id": hostile}},
        headers={"Authorization": "Bearer alice-token"},
    )
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert everyone.transport.calls == 0


async def test_slurmdbd_down_fails_the_job_field_only(
    jobs: Jobs, caplog: pytest.LogCaptureFixture
) -> None:
    """slurmdbd down while job(id) asks for a forgotten job: `job` is null with
    SLURM_UNAVAILABLE on its own path, and the rest of the cluster (its name, version) still
    answers; a live job is answered as ever. The error says slurmdbd is not answering and names
    no host, port or path (sacct's own words, "host:localhost:<port>", go to the server's log)."""
    caplog.set_level(logging.WARNING, logger="slurm_graphql")
    query = """query($id: String!) { cluster { name slurmVersion
      job(id: $id) { displayId source } } }"""
    with tempfile.TemporaryDirectory() as tmp:
        down = unreachable_slurmdbd(Path(tmp))

        def rewrite(command: Command) -> Command:
            if command.argv[0] != "sacct" and command.otherwise is None:
                return command
            if command.otherwise is not None:
                sacct = replace(command.otherwise, env={**command.otherwise.env, **down})
                return replace(command, otherwise=sacct)
            return replace(command, env={**command.env, **down})

        purging = PurgingTransport(LocalTransport())
        purging.purge(jobs.ended)
        transport = CountingTransport(purging, rewrite=rewrite)
        app = create_app(own_settings(job_visibility="all"), transports={"local": transport})
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://localhost"
            ) as client,
        ):
            for job_id, answered in ((jobs.ended, False), (jobs.live, True)):
                response = await client.post(
                    "/graphql",
                    json={"query": query, "variables": {"id": job_id}},
                    headers={"Authorization": "Bearer alice-token"},
                )
                body = response.json()
                cluster = body["data"]["cluster"]
                assert cluster["name"] == "local" and cluster["slurmVersion"], body
                if answered:
                    assert "errors" not in body and cluster["job"]["source"] == "SLURMCTLD"
                    continue
                assert cluster["job"] is None
                [error] = body["errors"]
                assert error["path"] == ["cluster", "job"]
                assert error["extensions"]["code"] == "SLURM_UNAVAILABLE"
                assert "slurmdbd" in error["message"]
                assert internals_in(error["message"]) == [], error
        # The server's log has what sacct said, with the port it tried.
        port = dead_port(down)
        said = [r.getMessage() for r in caplog.records if "persistent connection" in r.getMessage()]
        assert said and all(f":{port}" in line for line in said), said
