"""Cluster.jobHistory, Job.steps and Job.efficiency against sacct on the real cluster with
slurmdbd and MariaDB (scripts/local-cluster), as alice and bob, under both visibilities; hostile
filters; a cluster without slurmdbd."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from resolvers.global_ids import Kind, global_id
from resolvers.slurm.errors import SlurmError, check
from resolvers.slurm.history import HistoryQuery, HistoryRecord, history_command, parse_history
from resolvers.slurm.jobs import new_boundary
from schema.event import EventError
from server.app import create_app
from server.settings import Settings
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
from tests.support.visibility import own_settings
from transport.base import Command
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

HISTORY = """
query($filter: JobHistoryFilter, $first: Int, $after: String) {
  cluster { jobHistory(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { displayId jobId name user account qos state exitCode source
      steps { id stepId fullId name state exitCode elapsedSeconds cpuSeconds maxRssBytes nodes }
      efficiency { elapsedSeconds cpuSeconds cpuEfficiencyPercent maxRssBytes
                   memoryEfficiencyPercent } } } } } }"""


@dataclass(frozen=True)
class Finished:
    """Jobs that ended before the module's tests ran: alice's two, bob's one."""

    tag: str
    memory: str
    fails: str
    bob: str


def recorded(truth: dict[str, HistoryRecord], memory: str, fails: str) -> bool:
    """Every job ended in accounting, the memory job's MaxRSS and the failed job's srun in."""
    return (
        len(truth) == 3
        and all(
            job.end_time and all(s.state != "RUNNING" for s in job.steps) for job in truth.values()
        )
        and any(s.max_rss_bytes for s in truth[memory].steps)
        and any(s.step_id == "0" for s in truth[fails].steps)
    )


@pytest.fixture(scope="module")
def finished(unix_users: None) -> Finished:
    """alice holds 50 MB for 3 s and fails one job; bob runs one; all three in slurmdbd."""
    if not has_accounting():
        pytest.skip("the cluster under test has no slurmdbd (LOCAL_CLUSTER_ACCOUNTING=0)")
    tag = f"hist-{uuid.uuid4().hex[:8]}"
    code = "x = bytearray(50 << 20); import time; time.sleep(3)"
    memory = sbatch("-J", tag, "--wrap", f"python3 -c '{code}'", user="alice")
    fails = sbatch("-J", tag, "--wrap", "srun true; exit 3", user="alice")
    bob = sbatch("-J", tag, "--wrap", "true", user="bob")
    for job_id, state in ((memory, "COMPLETED"), (fails, "FAILED"), (bob, "COMPLETED")):
        wait_for_state(job_id, state, timeout=90)
    deadline = time.monotonic() + 30
    # slurmdbd hears of an end, and of the steps' figures, a moment after slurmctld.
    while (
        not recorded(sacct_says("root", (memory, fails, bob)), memory, fails)
        or len(sacct_says("alice", (), names=(tag,))) != 2
    ):
        assert time.monotonic() < deadline, "slurmdbd did not record the jobs within 30 s"
        time.sleep(0.5)
    return Finished(tag, memory, fails, bob)


@dataclass
class App:
    client: httpx.AsyncClient
    transport: CountingTransport

    async def query(self, user: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": HISTORY, "variables": variables},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def app_with(settings: Settings, transport: CountingTransport) -> AsyncIterator[App]:
    app = create_app(settings, transports={"local": transport})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
    ):
        yield App(client, transport)


@pytest.fixture
async def everyone(finished: Finished) -> AsyncIterator[App]:
    """Visibility `all` (the default): every user's history."""
    async for app in app_with(
        own_settings(job_visibility="all"), CountingTransport(LocalTransport())
    ):
        yield app


@pytest.fixture
async def own(finished: Finished) -> AsyncIterator[App]:
    """SLURM_GRAPHQL_JOB_VISIBILITY=own."""
    async for app in app_with(own_settings(), CountingTransport(LocalTransport())):
        yield app


def nodes(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert "errors" not in body, body
    return [e["node"] for e in body["data"]["cluster"]["jobHistory"]["edges"]]


def ran_sacct(app: App) -> bool:
    """Whether any command the app ran was sacct (the cost check may read the nodes first)."""
    return any(argv[0] == "sacct" for batch in app.transport.batches for argv in batch)


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def sacct_says(
    user: str, job_ids: tuple[str, ...], names: tuple[str, ...] = ()
) -> dict[str, HistoryRecord]:
    """What sacct itself prints for these jobs (run as `user`, as the API does); by name, the
    user's own jobs of that name."""
    now = int(time.time())
    users = (user,) if names else ()
    query = HistoryQuery(now - 3600, now + 60, users=users, names=names, job_ids=job_ids)
    boundary = new_boundary()
    command = history_command(query, boundary)
    done = subprocess.run(
        ["runuser", "-u", user, "--", *command.argv],
        env={**os.environ, **command.env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {str(r.job_id): r for r in parse_history(done.stdout, boundary)}


async def test_history_steps_and_efficiency_match_sacct(everyone: App, finished: Finished) -> None:
    """alice's finished jobs come back as sacct reports them: state, exit code, steps with CPU
    time and MaxRSS, and seff's efficiency figures; from one sacct listing the window's jobs
    (--allocations, ids and times) and one of the page's jobs in full with their steps (--jobs
    of their ids)."""
    everyone.transport.batches.clear()
    body = await everyone.query("alice", filter={"names": [finished.tag], "users": ["alice"]})
    jobs = {job["displayId"]: job for job in nodes(body)}
    assert set(jobs) == {finished.memory, finished.fails}
    # Two sacct for the page, each in a round trip of its own: the jobs, then their steps.
    runs = [b for b in everyone.transport.batches if any(a[0] == "sacct" for a in b)]
    assert [len(batch) for batch in runs] == [1, 1]
    [window], [steps] = runs
    assert "--allocations" in window and not any(a.startswith("--jobs=") for a in window)
    ids = sorted(int(j) for j in (finished.memory, finished.fails))
    assert "--allocations" not in steps and f"--jobs={ids[0]},{ids[1]}" in steps
    truth = sacct_says("alice", (finished.memory, finished.fails))
    for job_id, job in jobs.items():
        expected = truth[job_id]
        assert (job["state"], job["exitCode"], job["source"]) == (
            expected.state,
            expected.exit_code,
            "ACCOUNTING",
        )
        assert [s["fullId"] for s in job["steps"]] == [s.display_id for s in expected.steps]
        assert (job["account"], job["qos"]) == ("physics", "normal")
    fails = jobs[finished.fails]
    assert (fails["state"], fails["exitCode"]) == ("FAILED", 3)
    assert {s["stepId"] for s in fails["steps"]} >= {"batch", "0"}
    memory = jobs[finished.memory]["efficiency"]
    assert memory["maxRssBytes"] > 50 << 20
    assert memory["memoryEfficiencyPercent"] == round(100 * memory["maxRssBytes"] / (100 << 20), 2)
    assert memory["elapsedSeconds"] >= 3


LIGHT = """query($filter: JobHistoryFilter) { cluster { jobHistory(filter: $filter) {
  totalCount edges { node { displayId jobId user account qos state exitCode source } } } } }"""


async def test_a_page_without_steps_reads_no_step_rows(everyone: App, finished: Finished) -> None:
    """A page selecting neither steps nor efficiency asks sacct for job rows only
    (--allocations: the window's listing, then the page's jobs in full), and its jobs read as
    those of a page with steps."""
    everyone.transport.batches.clear()
    response = await everyone.client.post(
        "/graphql",
        json={"query": LIGHT, "variables": {"filter": {"names": [finished.tag]}}},
        headers={"Authorization": "Bearer carol-token"},
    )
    light = nodes(response.json())
    listing, sacct = [a for b in everyone.transport.batches for a in b if a[0] == "sacct"]
    assert "--allocations" in listing and "--allocations" in sacct
    full = nodes(await everyone.query("carol", filter={"names": [finished.tag]}))
    keys = ("displayId", "jobId", "user", "account", "qos", "state", "exitCode", "source")
    assert [{k: job[k] for k in keys} for job in light] == [
        {k: job[k] for k in keys} for job in full
    ]
    assert len(light) == 3
    *_, with_steps = [a for b in everyone.transport.batches for a in b if a[0] == "sacct"]
    assert "--allocations" not in with_steps


async def test_pages_are_ordered_by_job_id_and_stable(everyone: App, finished: Finished) -> None:
    """first/after walk the three jobs one at a time, in job id order, with a total count."""
    seen: list[int] = []
    after = None
    for _ in range(4):
        body = await everyone.query("carol", filter={"names": [finished.tag]}, first=1, after=after)
        history = body["data"]["cluster"]["jobHistory"]
        assert history["totalCount"] == 3
        seen += [e["node"]["jobId"] for e in history["edges"]]
        after = history["pageInfo"]["endCursor"]
        if not history["pageInfo"]["hasNextPage"]:
            break
    assert seen == sorted(int(j) for j in (finished.memory, finished.fails, finished.bob))


async def test_bob_sees_none_of_alices_history_under_own(own: App, finished: Finished) -> None:
    """Under `own`, bob naming alice, her job ids or her jobs' name gets only his own jobs (or
    nothing), never her steps or efficiency; and sacct is never asked for her."""
    for hostile in (
        {"users": ["alice"]},
        {"ids": [finished.memory, finished.fails]},
        {"names": [finished.tag]},
        {"users": ["alice", "bob"], "names": [finished.tag]},
        {},
    ):
        body = await own.query("bob", filter=hostile)
        found = nodes(body)
        assert all(job["user"] == "bob" for job in found), hostile
        shown = {job["displayId"] for job in found} | {
            step["fullId"].split(".")[0] for job in found for step in job["steps"]
        }
        assert not shown & {finished.memory, finished.fails}, hostile
    for batch in own.transport.batches:
        for argv in batch:
            assert "--user=alice" not in argv and "--allusers" not in argv
            assert any(a == "--user=bob" for a in argv) or argv[0] != "sacct"
    mine = nodes(await own.query("bob", filter={"names": [finished.tag]}))
    assert [job["displayId"] for job in mine] == [finished.bob]
    # A page after a cursor just before alice's jobs asks for their ids (--jobs), as bob only.
    own.transport.batches.clear()
    first_id = min(int(finished.memory), int(finished.fails))
    text = f"history:{first_id - 1}:{int(time.time()) - 3600}:1"
    after = base64.urlsafe_b64encode(text.encode()).decode()
    response = await own.client.post(  # no totalCount: a page of the next ids
        "/graphql",
        json={"query": WALK.replace("state", "state user"), "variables": {"after": after}},
        headers={"Authorization": "Bearer bob-token"},
    )
    assert all(job["user"] == "bob" for job in nodes(response.json()))
    sacct = [argv for batch in own.transport.batches for argv in batch if argv[0] == "sacct"]
    assert any(a.startswith(f"--jobs={first_id},") for a in sacct[0])
    assert all("--user=bob" in argv for argv in sacct)


HOSTILE_FILTERS: list[dict[str, Any]] = [
    {"users": ["--allusers"]},
    {"accounts": ["physics,chem"]},
    {"partitions": ["x" * 10_240]},
    {"qos": ["-Q"]},
    {"names": ["a,b"]},
    {"ids": ["1,2"]},
    {"ids": ["now-1days"]},
    {"states": ["PENDING", "COMPLETING"]},
    {"submittedAfter": "1970-01-02T00:00:00Z"},
    {"submittedAfter": "2999-01-01T00:00:00Z"},
    {"submittedAfter": "2026-01-10T00:00:00Z", "submittedBefore": "2026-01-01T00:00:00Z"},
    {"endedAfter": "2020-01-01T00:00:00Z"},  # a window of years: wider than the limit
    {"submittedAfter": "2026-01-01T00:00:00"},  # no time zone
]


@pytest.mark.parametrize("hostile", HOSTILE_FILTERS, ids=lambda h: repr(h)[:50])
async def test_hostile_filters_are_refused_before_sacct(own: App, hostile: dict[str, Any]) -> None:
    """Option-like, comma-joined, 10 KB, far-away or reversed values: BAD_USER_INPUT (or the
    schema's own validation error), and sacct never runs."""
    own.transport.batches.clear()
    body = await own.query("alice", filter=hostile)
    assert code(body) in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"), body
    assert not ran_sacct(own)


async def test_a_huge_first_is_refused(own: App) -> None:
    """first beyond SLURM_GRAPHQL_MAX_PAGE_SIZE: BAD_USER_INPUT, sacct never runs."""
    own.transport.batches.clear()
    body = await own.query("alice", first=10**6)
    assert code(body) == "BAD_USER_INPUT"
    assert not ran_sacct(own)


def without_slurmdbd(directory: Path) -> Command:
    """A slurm.conf of this cluster with accounting_storage/none (LOCAL_CLUSTER_ACCOUNTING=0)."""
    text = Path(os.environ["SLURM_CONF"]).read_text().splitlines()
    body = [line for line in text if not line.startswith("AccountingStorage")]
    conf = directory / "slurm.conf"
    conf.write_text("\n".join(["AccountingStorageType=accounting_storage/none", *body]) + "\n")
    conf.chmod(0o644)
    directory.chmod(0o755)
    return Command(("true",), env={"SLURM_CONF": str(conf)})


async def test_no_slurmdbd_is_accounting_unavailable(finished: Finished) -> None:
    """On a cluster without slurmdbd: ACCOUNTING_UNAVAILABLE with Slurm's message."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = without_slurmdbd(Path(tmp))

        def rewrite(command: Command) -> Command:
            return replace(command, env={**command.env, **conf.env})

        transport = CountingTransport(LocalTransport(), rewrite=rewrite)
        async for app in app_with(own_settings(), transport):
            body = await app.query("alice")
            assert code(body) == "ACCOUNTING_UNAVAILABLE"
            assert "accounting storage is disabled" in body["errors"][0]["message"]


# One query per field: each is non-null, so its failure nulls `data` (job(id), nullable, is
# tests/server/test_job_recall.py's: there the rest of the query answers).
DOWN = {
    ("viewer", "associations"): "{ viewer { associations { account } } }",
    ("cluster", "accounts"): "{ cluster { name accounts { name } } }",
    ("cluster", "qos"): "{ cluster { name qos { name } } }",
    ("cluster", "jobHistory"): "{ cluster { name jobHistory(first: 5) { totalCount } } }",
}


async def test_slurmdbd_down_names_no_host_port_or_path(
    finished: Finished, caplog: pytest.LogCaptureFixture
) -> None:
    """slurmdbd down: jobHistory (sacct), accounts, qos and the viewer's associations (sacctmgr)
    each fail with SLURM_UNAVAILABLE saying slurmdbd is not answering, naming no host, port or
    path; a subscription's error event reads the same; the
    server's log keeps what Slurm said, with the port it tried."""
    caplog.set_level(logging.WARNING, logger="slurm_graphql")
    with tempfile.TemporaryDirectory() as tmp:
        down = unreachable_slurmdbd(Path(tmp))
        port = dead_port(down)

        def rewrite(command: Command) -> Command:
            return replace(command, env={**command.env, **down})

        transport = CountingTransport(LocalTransport(), rewrite=rewrite)
        async for app in app_with(own_settings(), transport):
            for path, query in DOWN.items():
                response = await app.client.post(
                    "/graphql",
                    json={"query": query},
                    headers={"Authorization": "Bearer alice-token"},
                )
                body = response.json()
                [error] = body["errors"]
                assert tuple(error["path"]) == path, body
                assert error["extensions"]["code"] == "SLURM_UNAVAILABLE", error
                assert "slurmdbd" in error["message"], error
                assert internals_in(error["message"]) == [], error
        # What a subscription's UNAVAILABLE event carries for the same failure of the real sacct.
        [result] = await LocalTransport().run(
            [rewrite(Command(("sacct", "-X", "-n", "--jobs", finished.bob)))]
        )
        with pytest.raises(SlurmError) as raised:
            check(result)
        event = EventError.from_exception(raised.value)
        assert event is not None and event.code == "SLURM_UNAVAILABLE"
        assert "slurmdbd" in event.message and internals_in(event.message) == [], event
        assert internals_in(raised.value.message) == [], raised.value.message
    said = [r.getMessage() for r in caplog.records if "persistent connection" in r.getMessage()]
    assert len(said) >= 4 and all(f":{port}" in line for line in said), said


JOB = """query($id: String!) { cluster { job(id: $id) {
  id displayId user state exitCode source steps { id stepId } efficiency { elapsedSeconds } } } }"""


async def test_a_forgotten_job_is_answered_from_accounting(finished: Finished) -> None:
    """job(id) of a job the controller has purged comes from slurmdbd (source ACCOUNTING), with
    its steps; under `own`, bob gets null for alice's purged job, as for a missing one, and his
    own purged job from accounting."""
    purging = PurgingTransport(LocalTransport())
    for job_id in (finished.fails, finished.bob):
        purging.purge(job_id)
    async for app in app_with(own_settings(), CountingTransport(purging)):
        hers = await job_as(app, "alice", finished.fails)
        assert (hers["state"], hers["exitCode"], hers["source"]) == ("FAILED", 3, "ACCOUNTING")
        assert {"batch", "0"} <= {step["stepId"] for step in hers["steps"]}
        assert hers["efficiency"] is not None
        assert await job_as(app, "bob", finished.fails) is None
        assert await job_as(app, "bob", "987654321") is None
        assert (await job_as(app, "bob", finished.bob))["source"] == "ACCOUNTING"
        assert (await job_as(app, "alice", finished.memory))["source"] == "SLURMCTLD"


async def job_as(app: App, user: str, job_id: str) -> Any:
    return await cluster_job(app.client, JOB, user, job_id)


STEP = """query($ids: [ID!]!) { nodes(ids: $ids) { id __typename
  ... on JobStep { stepId fullId state exitCode } } }"""


def first_of(items: list[dict[str, Any]], key: str, value: object) -> dict[str, Any]:
    """The first of `items` whose `key` is `value`; an assertion naming what there was if none
    (next() would raise StopIteration, which a coroutine turns into a bare RuntimeError)."""
    for item in items:
        if item[key] == value:
            return item
    raise AssertionError(f"no {key} {value!r} among {[item[key] for item in items]}")


async def test_a_step_is_refetched_by_its_global_id_within_visibility(
    own: App, finished: Finished
) -> None:
    """A step's opaque id from alice's history refetches it through nodes(ids:) as she saw it;
    under `own`, bob gets null for it (and for a step that does not exist) beside his own step,
    and sacct is asked for bob's jobs only."""
    history = await own.query("alice", filter={"names": [finished.tag]})
    hers = first_of(nodes(history), "displayId", finished.fails)
    srun = first_of(hers["steps"], "stepId", "0")
    theirs = await own.query("bob", filter={"names": [finished.tag]})
    his = first_of(nodes(theirs)[0]["steps"], "stepId", "batch")
    tampered = srun["id"][:-2] + "x"  # not an id the API made: null
    missing = global_id(Kind.JOB_STEP, "local", f"{finished.bob}.99")  # no such step: null

    async def refetch(user: str, *ids: str) -> list[Any]:
        response = await own.client.post(
            "/graphql",
            json={"query": STEP, "variables": {"ids": list(ids)}},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        body = response.json()
        assert "errors" not in body, body
        return list(body["data"]["nodes"])

    [again] = await refetch("alice", srun["id"])
    assert again == {"__typename": "JobStep", **{k: srun[k] for k in ("id", "stepId", "fullId")},
                     "state": "COMPLETED", "exitCode": 0}  # fmt: skip
    own.transport.batches.clear()
    assert await refetch("bob", srun["id"], tampered, missing, his["id"]) == [
        None,
        None,
        None,
        {"__typename": "JobStep", "id": his["id"], "stepId": "batch",
         "fullId": his["fullId"], "state": "COMPLETED", "exitCode": 0},
    ]  # fmt: skip
    sacct = [argv for batch in own.transport.batches for argv in batch if argv[0] == "sacct"]
    assert sacct and all("--user=bob" in argv and "--allusers" not in argv for argv in sacct)


ACCOUNTING = """query { viewer { user associations { cluster account partition qos defaultQos
  maxJobs maxWallMinutes fairShare { rawShares normalizedShares rawUsage effectiveUsage
  fairShare } } }
  cluster { accounts { name organization description } qos { name priority maxWallMinutes } } }"""


def sacctmgr(*argv: str) -> list[list[str]]:
    out = slurm("sacctmgr", "--noheader", "--parsable2", "show", *argv)
    return [line.split("|") for line in out.splitlines() if line]


async def test_accounts_qos_and_associations_match_sacctmgr(own: App) -> None:
    """What sacctmgr and sshare say, through the API, as alice and carol: each sees only their
    own associations, with their fair-share line."""
    response = await own.client.post(
        "/graphql", json={"query": ACCOUNTING}, headers={"Authorization": "Bearer alice-token"}
    )
    body = response.json()
    assert "errors" not in body, body
    data = body["data"]
    [mine] = data["viewer"]["associations"]
    assert (mine["account"], mine["qos"], mine["defaultQos"]) == (
        "physics",
        ["long", "normal"],
        "normal",
    )
    assert mine["fairShare"]["rawShares"] == 1
    expected = {row[0] for row in sacctmgr("accounts", "format=Account")}
    assert {a["name"] for a in data["cluster"]["accounts"]} == expected
    qos = {q["name"]: q for q in data["cluster"]["qos"]}
    assert set(qos) == {row[0] for row in sacctmgr("qos", "format=Name")}
    assert (qos["long"]["maxWallMinutes"], qos["long"]["priority"]) == (7 * 1440, 10)
    response = await own.client.post(
        "/graphql", json={"query": ACCOUNTING}, headers={"Authorization": "Bearer carol-token"}
    )
    carol = response.json()["data"]["viewer"]["associations"]
    assert [(a["account"]) for a in carol] == ["chem"]


WALK = """query($filter: JobHistoryFilter, $after: String) { cluster {
  jobHistory(filter: $filter, first: 1, after: $after) {
    pageInfo { hasNextPage endCursor } edges { node { jobId displayId state } } } } }"""


async def walk(app: App, query: str, tag: str) -> list[tuple[int, str]]:
    """Every job named `tag`, one per page, as carol (who sees all); the window ends in ten
    minutes, so that it holds a requeued job's next run (eligible two minutes after)."""
    seen: list[tuple[int, str]] = []
    after = None
    soon = datetime.fromtimestamp(time.time() + 600, UTC).isoformat()
    job_filter = {"names": [tag], "submittedBefore": soon}
    for _ in range(20):
        response = await app.client.post(
            "/graphql",
            json={"query": query, "variables": {"filter": job_filter, "after": after}},
            headers={"Authorization": "Bearer carol-token"},
        )
        history = response.json()["data"]["cluster"]["jobHistory"]
        seen += [(e["node"]["jobId"], e["node"]["state"]) for e in history["edges"]]
        after = history["pageInfo"]["endCursor"]
        if not history["pageInfo"]["hasNextPage"]:
            return seen
    raise AssertionError(f"more than 20 pages: {seen}")


def starttimes(app: App) -> list[str]:
    return [
        a
        for b in app.transport.batches
        for c in b
        if c[0] == "sacct"
        for a in c
        if a.startswith("--starttime=")
    ]


async def test_a_pushed_cursor_loses_no_array_task_nor_requeued_jobs_neighbour(
    everyone: App, unix_users: None
) -> None:
    """Pages that do not count push their cursor into sacct's window (a later --starttime),
    and list exactly the jobs counted pages list: array tasks (ids given when they start, Submit
    the array's) and a job that ended between a requeued job's first submission and its
    requeue (whose Submit is then the requeue's; its first run's, read with --duplicates, is
    what the cursor carries)."""
    tag = f"push-{uuid.uuid4().hex[:8]}"
    requeued = sbatch("-J", tag, "-p", "debug", "--wrap", "sleep 300", user="alice")
    wait_for_state(requeued, "RUNNING", timeout=90)
    neighbour = sbatch("-J", tag, "--wrap", "true", user="bob")
    array = sbatch("-J", tag, "--array=1-3%1", "--wrap", "true", user="alice")
    after = sbatch("-J", tag, "--wrap", "true", user="bob")
    try:
        for job_id in (neighbour, after, f"{array}_3"):
            wait_for_state(job_id, "COMPLETED", timeout=120)
        await asyncio.sleep(
            7
        )  # past the cursor's slack: a window started at the requeue misses them
        slurm("scontrol", "requeue", requeued)
        expected_count = 1 + 1 + 3 + 1
        deadline = time.monotonic() + 120  # a loaded CI: slurmdbd hears of the requeue late
        counted: list[tuple[int, str]] = []
        # Until slurmdbd holds every job, and the requeued job's next run (PENDING).
        while len(counted) != expected_count or (int(requeued), "PENDING") not in counted:
            assert time.monotonic() < deadline, f"slurmdbd did not record them: {counted}"
            counted = await walk(everyone, WALK.replace("pageInfo", "totalCount pageInfo"), tag)
            await asyncio.sleep(0.5)
        everyone.transport.batches.clear()
        pushed = await walk(everyone, WALK, tag)
        # The same jobs (a state may have moved on between the two walks).
        assert [job_id for job_id, _ in pushed] == [job_id for job_id, _ in counted]
        assert len(set(starttimes(everyone))) > 1, "no page pushed its cursor into sacct"
        # The requeued job read as its next run, waiting, submitted at the requeue: after
        # `neighbour` ended. Its cursor carried its first run's Submit, so `neighbour` is there.
    finally:
        slurm("scancel", requeued)


async def test_a_forged_history_cursor_never_widens_the_window(own: App) -> None:
    """A cursor is the client's to forge: garbage is BAD_USER_INPUT before sacct; a time far in
    the future answers an empty page without running sacct; a time of 0 leaves sacct's window
    where the filter put it (a cursor only ever narrows it); a stride asks for at most 1,000
    ids, none past Slurm's largest job id."""
    query = WALK.replace("first: 1", "first: 5")

    def cursor(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode()

    for forged in ("history:1:-1", "history:1:x", "nonsense", "history:99999999999999999999999:1"):
        own.transport.batches.clear()
        response = await own.client.post(
            "/graphql",
            json={"query": query, "variables": {"after": cursor(forged)}},
            headers={"Authorization": "Bearer alice-token"},
        )
        assert code(response.json()) == "BAD_USER_INPUT", forged
        assert not ran_sacct(own)
    own.transport.batches.clear()
    future = cursor(f"history:1:{int(time.time()) + 10 * 86_400}")
    response = await own.client.post(
        "/graphql",
        json={"query": query, "variables": {"after": future}},
        headers={"Authorization": "Bearer alice-token"},
    )
    assert nodes(response.json()) == [] and not ran_sacct(own)
    before = int(time.time())
    response = await own.client.post(
        "/graphql",
        json={"query": query, "variables": {"after": cursor("history:1:0")}},
        headers={"Authorization": "Bearer alice-token"},
    )
    nodes(response.json())
    [start] = set(starttimes(own))  # the window's listing, then its page's jobs by id
    assert start >= "--starttime=" + datetime.fromtimestamp(before - 86_400 - 60, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    # A forged stride only changes how many ids are asked for, within the cap, never past the
    # largest job id; a stride of 0 or one too large for the cap reads the window.
    now = int(time.time())
    for forged in ("history:1:0:0", "history:1:0:999999", f"history:4294967290:{now - 60}:7"):
        own.transport.batches.clear()
        response = await own.client.post(
            "/graphql",
            json={"query": query, "variables": {"after": cursor(forged)}},
            headers={"Authorization": "Bearer alice-token"},
        )
        assert all(job["jobId"] > int(forged.split(":")[1]) for job in nodes(response.json()))
        for batch in own.transport.batches:
            for argv in batch:
                for listed in (a.removeprefix("--jobs=") for a in argv if a.startswith("--jobs=")):
                    ids = [int(i) for i in listed.split(",")]
                    assert len(ids) <= 1000 and max(ids) < 1 << 32, forged


PAGES = """query($filter: JobHistoryFilter, $after: String) { cluster {
  jobHistory(filter: $filter, first: 3, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { jobId state steps { stepId } efficiency { elapsedSeconds } } } } } }"""


async def test_pages_after_a_cursor_ask_sacct_for_the_next_ids_only(
    everyone: App, unix_users: None
) -> None:
    """After a cursor, a page without totalCount runs ONE sacct, of the next job ids only
    (--jobs, as many as the cursor's stride says), with their steps; only when those hold too
    few jobs to fill the page and tell whether more follow (the last page) does it read the
    window too. The jobs, their order and their steps are those of counted pages, which read
    the whole window."""
    tag = f"ids-{uuid.uuid4().hex[:8]}"
    array = sbatch("-J", tag, "--array=1-10", "--wrap", "true", user="alice")
    single = sbatch("-J", tag, "--wrap", "true", user="bob")
    wait_for_state(f"{array}_10", "COMPLETED", timeout=60)

    def ended(records: dict[str, HistoryRecord]) -> bool:
        """slurmdbd hears of a job's end and of its steps a moment after slurmctld; on a loaded
        CI the job's row may be in while its batch step is not (a page would show no steps)."""
        return all(r.end_time and r.steps for r in records.values())

    deadline = time.monotonic() + 120
    while True:
        arrays, bobs = sacct_says("alice", (), names=(tag,)), sacct_says("bob", (single,))
        if len(arrays) == 10 and len(bobs) == 1 and ended(arrays) and ended(bobs):
            break
        assert time.monotonic() < deadline, "slurmdbd did not record the jobs within 120 s"
        await asyncio.sleep(0.5)

    async def pages(query: str) -> list[list[dict[str, Any]]]:
        found: list[list[dict[str, Any]]] = []
        after = None
        for _ in range(10):
            everyone.transport.batches.clear()
            response = await everyone.client.post(
                "/graphql",
                json={"query": query, "variables": {"filter": {"names": [tag]}, "after": after}},
                headers={"Authorization": "Bearer carol-token"},
            )
            history = response.json()["data"]["cluster"]["jobHistory"]
            runs = [a for b in everyone.transport.batches for a in b if a[0] == "sacct"]
            found.append([{"sacct": runs}] + [e["node"] for e in history["edges"]])
            after = history["pageInfo"]["endCursor"]
            if not history["pageInfo"]["hasNextPage"]:
                return found
        raise AssertionError("more than 10 pages of 3 for 11 jobs")

    pushed = await pages(PAGES)
    counted = await pages(PAGES.replace("pageInfo", "totalCount pageInfo"))
    assert [page[1:] for page in pushed] == [page[1:] for page in counted]
    assert [len(page) - 1 for page in pushed] == [3, 3, 3, 2]
    assert all(job["steps"] and job["efficiency"] for page in pushed for job in page[1:])
    first, *middle, last = [page[0]["sacct"] for page in pushed]
    assert len(first) == 2  # the window's jobs, then the page's steps
    # The array's own record (its raw id is the array's, its task the last one) is asked for
    # as `A_10`: plain `A` would bring all ten tasks and their steps.
    [page_read] = [a for a in first[1] if a.startswith("--jobs=")]
    asked = page_read.removeprefix("--jobs=").split(",")
    assert f"{array}_10" in asked and array not in asked, asked
    for runs in middle:  # one sacct of the next ids, with steps, first
        # An assertion, not next(): a StopIteration raised in a coroutine reaches pytest as
        # "coroutine raised StopIteration", which says nothing of the page.
        assert runs, f"a page after a cursor ran no sacct: {middle}"
        listed = [a for a in runs[0] if a.startswith("--jobs=")]
        assert len(listed) == 1, f"its first sacct does not name the next ids: {runs[0]}"
        assert "--allocations" not in runs[0] and len(listed[0].split(",")) <= 1000
    # ...and alone, unless other jobs took ids between these (another test's, on a busy CI)
    # beyond what the stride foresaw: then the window is read too, as on the last page.
    assert any(len(runs) == 1 for runs in middle)
    # The last page: the next ids hold too few jobs, so the window is listed too; its jobs, all
    # among those ids, were read in full with them (no third sacct).
    assert len(last) == 2 and any(a.startswith("--jobs=") for a in last[0])
    assert "--format=JobIDRaw,JobID,Submit,End" in last[1]
    # Counted pages after a cursor ask for the next ids too (the window's listing beside them,
    # at once, for the count): a --jobs of more ids than the page holds.
    counted_runs = [page[0]["sacct"] for page in counted[1:-1]]
    asked = [len(a.split(",")) for runs in counted_runs for argv in runs for a in argv
             if a.startswith("--jobs=")]  # fmt: skip
    assert any(n > 3 for n in asked), counted_runs


COUNTED = """query($filter: JobHistoryFilter, $after: String) { cluster {
  jobHistory(filter: $filter, first: 1, after: $after) { totalCount
    pageInfo { hasNextPage endCursor } edges { node { jobId user } } } } }"""


def listings_run(app: App) -> list[tuple[str, ...]]:
    """The window listings (ids and times, job rows only) the app's sacct printed."""
    return [
        argv
        for batch in app.transport.batches
        for argv in batch
        if argv[0] == "sacct" and "--format=JobIDRaw,JobID,Submit,End" in argv
    ]


async def counted_walk(app: App, user: str, tag: str) -> list[tuple[int, str, int]]:
    """(job id, user, totalCount) of each page of one job, walked with totalCount."""
    seen, after = [], None
    while True:
        response = await app.client.post(
            "/graphql",
            json={"query": COUNTED, "variables": {"filter": {"names": [tag]}, "after": after}},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        history = response.json()["data"]["cluster"]["jobHistory"]
        seen += [(e["node"]["jobId"], e["node"]["user"], history["totalCount"])
                 for e in history["edges"]]  # fmt: skip
        if not history["pageInfo"]["hasNextPage"]:
            return seen
        after = history["pageInfo"]["endCursor"]


async def test_counted_pages_reuse_their_requesters_listing_only(finished: Finished) -> None:
    """With SLURM_GRAPHQL_HISTORY_LISTING_TTL, alice's counted pages list the window once (one
    sacct per page after the first, the page's job by id) and read what uncached pages read; bob,
    right after her under `own`, runs his own listing as bob, sees none of her jobs and his own
    count; /metrics says hits and misses. With TTL 0 every counted page lists again."""
    uncached = CountingTransport(LocalTransport())
    async for app in app_with(own_settings(history_listing_ttl=0.0), uncached):
        expected = await counted_walk(app, "alice", finished.tag)
        assert len(listings_run(app)) == len(expected) == 2
    cached = CountingTransport(LocalTransport())
    async for app in app_with(own_settings(history_listing_ttl=60.0), cached):
        assert await counted_walk(app, "alice", finished.tag) == expected
        assert len(listings_run(app)) == 1  # and each page's job by id: 3 sacct for 2 pages
        assert sum(a[0] == "sacct" for b in app.transport.batches for a in b) == 3
        app.transport.batches.clear()
        app.transport.sent.clear()
        bobs = await counted_walk(app, "bob", finished.tag)
        assert bobs == [(int(finished.bob), "bob", 1)]
        [listing] = listings_run(app)
        assert "--user=bob" in listing and "--allusers" not in listing
        sacct = [c for batch in app.transport.sent for c in batch if c.argv[0] == "sacct"]
        assert sacct and all(c.user == "bob" for c in sacct)
        metrics = (await app.client.get("/metrics")).text
        assert 'slurm_graphql_history_listing_cache_total{cluster="local",result="hit"} 1.0' in (
            metrics
        )
        assert 'slurm_graphql_history_listing_cache_total{cluster="local",result="miss"} 2.0' in (
            metrics
        )
