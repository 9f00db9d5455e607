"""SLURM_GRAPHQL_JOB_VISIBILITY=own, attacked: as bob, every query and mutation path that yields a
job, over local:// and ssm:// (and through the Lambda handler), on the real cluster where alice
has running, held and finished jobs. Nothing of hers may show, and every answer about one of her
jobs equals the answer about a job that does not exist. Subscriptions: test_visibility_live.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from resolvers.events import EventKind, FinalRecord, JobEventData, RecordSource, jobs_by_id
from resolvers.identity import Identity
from resolvers.mailbox import Mailbox
from resolvers.pagination import encode_cursor
from resolvers.slurm.jobs import JobRow, parse_squeue
from resolvers.snapshot import Need, Snapshot
from resolvers.visibility import EVERYONE, OutOfSight, Visibility
from resolvers.watches import JobWatch, PollUpdate
from schema.job import Job
from server.lambda_app import make_handler
from tests.conftest import UserApi, open_inner_transport
from tests.server.test_mutations import scancel
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.lambda_events import LambdaRuntime, event, response_body
from tests.support.scenario import sbatch, slurm
from tests.support.visibility import (
    EVERYTHING,
    MISSING,
    Jobs,
    alice_untouched,
    assert_nothing_of_alice,
    missing_like,
    modulo,
    own_settings,
)
from tests.support.visibility import jobs as jobs  # the module's fixture
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "22.05" / "squeue"


@dataclass
class OwnApi:
    """The app under `own` with the test token map, over one transport (counted)."""

    client: httpx.AsyncClient
    transport: CountingTransport

    async def raw(self, user: str, query: str, **variables: Any) -> str:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {user}-token"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return response.text


@pytest.fixture(params=["local", "ssm"])
async def own_api(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[OwnApi]:
    """The app under SLURM_GRAPHQL_JOB_VISIBILITY=own, through each transport."""
    inner = open_inner_transport(request, request.param)
    transport = CountingTransport(inner)
    try:
        async with app_client(own_settings(), {"local": transport}) as client:
            yield OwnApi(client, transport)
    finally:
        await inner.aclose()


PAGE = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"


def listings(jobs: Jobs) -> list[tuple[str, dict[str, Any]]]:
    """Every path that lists jobs, at any depth, with aliases, fragments and filters naming
    alice, her jobs' name and ids, and a cursor from her job."""
    return [
        (
            f"""{{ cluster {{ jobs(first: 100) {{
                {PAGE} edges {{ cursor node {{ ...Everything }} }} }} }} }}""",
            {},
        ),
        (
            """{ clusters { name nodes { name jobs { ...Everything } partitions { name
                jobs(first: 50) { totalCount edges { node { ...Everything } } } } } } }""",
            {},
        ),
        (
            """{ cluster { partitions { name
                jobs(first: 50) { totalCount edges { node { ...Everything } } } } } }""",
            {},
        ),
        (
            """query($node: String!) { cluster { node(name: $node) { jobs { ...Everything } }
                partition(name: "debug") { jobs(filter: {users: ["alice"]}) { totalCount } } } }""",
            {"node": jobs.node},
        ),
        (
            """{ mine: cluster { jobs(filter: {users: ["alice", "bob"]}, first: 100) {
                totalCount edges { node { ...Everything } } } }
              byState: cluster { jobs(filter: {states: [RUNNING, PENDING, COMPLETED]}, first: 100) {
                totalCount edges { node { displayId user name } } } } }""",
            {},
        ),
        (
            f"""query($name: String!, $ids: [String!]) {{ cluster {{
                byName: jobs(filter: {{names: [$name]}}) {{ {PAGE}
                  edges {{ node {{ displayId }} }} }}
                byIds: jobs(filter: {{ids: $ids}}) {{ {PAGE} }} }} }}""",
            {"name": jobs.name, "ids": list(jobs.alice_forms)},
        ),
        (
            f"""query($after: String!) {{ cluster {{ jobs(first: 100, after: $after) {{
                {PAGE} edges {{ node {{ displayId user name }} }} }} }} }}""",
            {"after": encode_cursor(int(jobs.alice_running) - 1)},
        ),
        (
            """{ cluster { ... on Cluster { jobs(first: 100) { edges { node { ... on Job {
                displayId name user nodes { jobs { ... on Job { displayId name user } } }
                } } } } } } }""",
            {},
        ),
        (
            "query($id: String!) { cluster { job(id: $id) { ...Everything } } }",
            {"id": jobs.bob_running},
        ),
    ]


async def test_no_listing_or_nested_path_shows_another_users_job(
    own_api: OwnApi, jobs: Jobs
) -> None:
    """bob lists jobs every way there is, nested at any depth: only his, nothing of alice's."""
    seen_bob = False
    for query, variables in listings(jobs):
        text = await own_api.raw(
            "bob", query + EVERYTHING * ("...Everything" in query), **variables
        )
        assert_nothing_of_alice(text, jobs)
        seen_bob |= f'"displayId":"{jobs.bob_running}"' in text.replace(" ", "")
        users = {value for key, value in _leaves(json.loads(text)) if key == "user"}
        assert users <= {"bob"}, users
    assert seen_bob  # the walk did reach jobs: bob's own, on alice's node


PER_ID = [
    "query($id: String!) { cluster { job(id: $id) { ...Everything } } }" + EVERYTHING,
    "query($id: String!) { cluster { jobs(filter: {ids: [$id]}) { totalCount pageInfo { "
    "hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { displayId } } "
    "} } }",
    "query($id: String!) { a: cluster { j: job(id: $id) { displayId } "
    "n: jobs(filter: {ids: [$id]}) { totalCount } } b: clusters { job(id: $id) { ...J } } } "
    "fragment J on Job { displayId name user }",
    "query($id: String!) { cluster { partitions { name "
    "jobs(filter: {ids: [$id]}) { totalCount } } } }",
    "query($id: String!) { cluster { job(id: $id) { output { text } "
    "error: output(stream: STDERR) { text } } } }",
]


async def test_every_answer_about_her_job_is_the_answer_about_a_missing_one(
    own_api: OwnApi, jobs: Jobs
) -> None:
    """job(id), ids filters, aliases and fragments: her job answers as a job nobody has."""
    for query in PER_ID:
        for job_id in jobs.alice_forms:
            # Asked at once: the two answers come from the same moment of the cluster.
            theirs, missing = await asyncio.gather(
                own_api.raw("bob", query, id=job_id),
                own_api.raw("bob", query, id=missing_like(job_id)),
            )
            assert_nothing_of_alice(modulo(theirs, job_id), jobs)
            assert modulo(theirs, job_id) == modulo(missing, missing_like(job_id))


ACTIONS = [
    ("cancelJob", ""),
    ("cancelJob", ', signal: "KILL"'),
    ("holdJob", ""),
    ("releaseJob", ""),
    ("requeueJob", ""),
    ("requeueJob", ", hold: true"),
    ("updateJob", ', input: {name: "pwned", comment: "pwned", timeLimitMinutes: 5}'),
]


def action(name: str, arguments: str) -> str:
    return (
        f"mutation($id: String!) {{ {name}(id: $id{arguments}) {{ __typename "
        "... on JobActionRejected { code message field } "
        "... on JobActionDone { job { ...Everything } } } }" + EVERYTHING
    )


@pytest.mark.timeout(600)
async def test_acting_on_her_job_is_refused_as_on_a_missing_one(
    own_api: OwnApi, jobs: Jobs
) -> None:
    """cancel, signal, hold, release, requeue and update her job: JOB_NOT_FOUND `no job N`, as for
    a missing job, in the same one round trip, and nothing is done to her job."""
    for name, arguments in ACTIONS:
        for job_id in jobs.alice_ids:
            before = own_api.transport.calls
            theirs = await own_api.raw("bob", action(name, arguments), id=job_id)
            middle = own_api.transport.calls
            missing = await own_api.raw("bob", action(name, arguments), id=missing_like(job_id))
            assert middle - before == own_api.transport.calls - middle == 1
            assert modulo(theirs, job_id) == modulo(missing, missing_like(job_id))
            payload = json.loads(theirs)["data"][name]
            expected = {"code": "JOB_NOT_FOUND", "message": f"no job {job_id}", "field": None}
            assert payload == {"__typename": "JobActionRejected", **expected}, payload
    alice_untouched(jobs)


async def test_under_all_acting_on_another_users_job_stays_permission_denied(
    user_api: UserApi, jobs: Jobs
) -> None:
    """With visibility `all`, nothing is hidden: Slurm's own refusal, and no job is touched."""
    query = """mutation($id: String!) {
      cancelJob(id: $id) { ... on JobActionRejected { code message } } }"""
    theirs = await user_api.as_user("bob", query, id=jobs.alice_held)
    missing = await user_api.as_user("bob", query, id=missing_like(jobs.alice_held))
    assert theirs["data"]["cancelJob"]["code"] == "PERMISSION_DENIED", theirs
    assert missing["data"]["cancelJob"] == {"code": "JOB_NOT_FOUND", "message": f"no job {MISSING}"}
    alice_untouched(jobs)


async def test_payloads_of_his_own_writes_show_nothing_of_hers(own_api: OwnApi, jobs: Jobs) -> None:
    """bob's update of his job running on alice's node, and his submission: their payloads'
    nested nodes and partitions list nothing of alice's."""
    update = (
        'mutation($id: String!) { updateJob(id: $id, input: {comment: "bob was here"}) { '
        "__typename ... on JobActionDone { job { ...Everything } } } }" + EVERYTHING
    )
    text = await own_api.raw("bob", update, id=jobs.bob_running)
    assert json.loads(text)["data"]["updateJob"]["__typename"] == "JobActionDone", text
    assert_nothing_of_alice(text, jobs)
    submit = (
        "mutation($input: SubmitJobInput!) { submitJob(input: $input) { __typename "
        "... on JobSubmitted { job { ...Everything } } } }" + EVERYTHING
    )
    held = {"script": "#!/bin/sh\ntrue\n", "hold": True, "partition": "debug"}
    text = await own_api.raw("bob", submit, input=held)
    body = json.loads(text)["data"]["submitJob"]
    try:
        assert body["__typename"] == "JobSubmitted", body
        assert_nothing_of_alice(text, jobs)
    finally:
        if "job" in body:
            scancel(body["job"]["jobId"])


SUBMIT = """mutation($input: SubmitJobInput!) { submitJob(input: $input) { __typename
  ... on SubmitRejected { code message field } ... on JobSubmitted { job { jobId } } } }"""
UPDATE = """mutation($id: String!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) {
  __typename ... on JobActionRejected { code message field } } }"""


async def test_naming_her_job_as_a_dependency_is_refused_as_a_missing_one(
    own_api: OwnApi, jobs: Jobs
) -> None:
    """Slurm accepts a dependency on anyone's job and refuses one on an unknown job: under own,
    submitJob and updateJob naming her job answer as for a missing one, and nothing is done."""
    script = {"script": "#!/bin/sh\ntrue\n", "hold": True, "partition": "debug"}
    for job_id in jobs.alice_ids:
        answers = []
        for named in (job_id, missing_like(job_id)):
            after = [{"type": "AFTEROK", "jobIds": [named]}]
            submitted = await own_api.raw("bob", SUBMIT, input={**script, "dependencies": after})
            if (job := json.loads(submitted)["data"]["submitJob"].get("job")) is not None:
                scancel(job["jobId"])
            updated = await own_api.raw(
                "bob", UPDATE, id=jobs.bob_held, input={"dependencies": after}
            )
            answers.append(modulo(submitted + updated, named))
            expected = {"code": "INVALID_INPUT", "message": f"no job {named}"}
            assert json.loads(submitted)["data"]["submitJob"] == {
                "__typename": "SubmitRejected",
                **expected,
                "field": "dependencies",
            }
        assert answers[0] == answers[1]
    own = [{"type": "AFTERANY", "jobIds": [jobs.bob_running]}]
    mine = await own_api.raw("bob", UPDATE, id=jobs.bob_held, input={"dependencies": own})
    assert json.loads(mine)["data"]["updateJob"] == {"__typename": "JobActionDone"}


async def test_the_response_cache_never_answers_one_user_with_anothers_view(jobs: Jobs) -> None:
    """With the response cache on, alice's answer is hers: bob asking the same right after
    gets his own, and carol (an admin) hers."""
    settings = own_settings(cache_ttl=30.0, response_cache=True)
    query = """query($name: String!) { cluster { jobs(filter: {names: [$name]}) {
      totalCount edges { node { displayId name user } } } } }"""
    transport = CountingTransport(LocalTransport())
    async with app_client(settings, {"local": transport}) as client:
        api = OwnApi(client, transport)
        assert jobs.name in await api.raw("alice", query, name=jobs.name)
        for _ in range(2):  # the second is answered from the cache, if anything is
            assert_nothing_of_alice(await api.raw("bob", query, name=jobs.name), jobs)
        assert jobs.name in await api.raw("carol", query, name=jobs.name)


def test_the_lambda_handler_hides_her_jobs_too(jobs: Jobs) -> None:
    """Through the Lambda handler: bob's listing holds nothing of hers, her job is a missing one."""
    runtime = LambdaRuntime(lambda: make_handler(own_settings(), {"local": LocalTransport()}))

    def post(query: str, **variables: Any) -> str:
        body = json.dumps({"query": query, "variables": variables}).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer bob-token"}
        response = runtime.invoke(event("http", "POST", "/graphql", headers=headers, body=body))
        assert response["statusCode"] == 200, response
        return response_body(response).decode()

    try:
        [listing, *_] = listings(jobs)
        assert_nothing_of_alice(post(listing[0] + EVERYTHING), jobs)
        lookup = PER_ID[0]
        theirs, missing = post(lookup, id=jobs.alice_running), post(lookup, id=MISSING)
        assert modulo(theirs, jobs.alice_running) == modulo(missing, MISSING)
    finally:
        runtime.close()


def _leaves(value: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, k)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v, key)]
    return [(key, value)]


def golden_rows() -> list[JobRow]:
    """Real squeue rows (the golden capture): jobs of root and of another user."""
    argv = json.loads((GOLDEN / "scenario.argv.json").read_text())["argv"]
    boundary = next(a for a in argv if a.startswith("--Format=")).rsplit("\x1e", 1)[1]
    return parse_squeue((GOLDEN / "scenario.stdout").read_text(errors="replace"), boundary)


def test_a_job_cannot_be_built_on_data_no_audience_was_applied_to() -> None:
    """The choke point holds by construction: a Job on a raw snapshot, or on bob's view for
    someone else's row, is refused (a resolver that forgot to filter fails, it cannot leak)."""
    rows = golden_rows()
    raw = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(rows))
    with pytest.raises(OutOfSight):
        Job.from_row(rows[0], raw)
    bobs = raw.seen_by(Visibility.of(Identity("bob"), own_jobs_only=True))
    assert bobs.jobs == ()
    with pytest.raises(OutOfSight):
        Job.from_row(rows[0], bobs)
    assert Job.from_row(rows[0], raw.seen_by(EVERYONE))._record.user == rows[0].user


def test_under_own_users_and_anonymous_see_their_own_and_admins_everyone() -> None:
    """Visibility.of: a user sees their jobs, `nobody` (anonymous) none, an admin all; under
    `all` everyone sees everything."""
    rows = golden_rows()
    raw = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(rows))
    owner = rows[0].user
    mine = raw.seen_by(Visibility.of(Identity(owner), own_jobs_only=True)).jobs or ()
    assert mine and {row.user for row in mine} == {owner}
    assert raw.seen_by(Visibility.of(Identity("nobody"), own_jobs_only=True)).jobs == ()
    assert (
        raw.seen_by(Visibility.of(Identity("bob", admin=True), own_jobs_only=True)).jobs == raw.jobs
    )
    assert raw.seen_by(Visibility.of(Identity("bob"), own_jobs_only=False)).jobs == raw.jobs


def test_an_accounting_record_of_her_job_is_no_news_to_his_watch() -> None:
    """jobStateChanged's lookups (scontrol, sacct) find her job's record: his watch ends with the
    UNKNOWN event an id nobody knows gets, holding nothing of the record."""
    rows = golden_rows()
    theirs = next(row for row in rows if row.user == "root" and row.display_id.isdigit())
    bob = Visibility.of(Identity("bob"), own_jobs_only=True)
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(rows))
    ends = []
    for job_id, final in (
        (theirs.display_id, FinalRecord(theirs.fields(), RecordSource.SCONTROL)),
        ("999999", FinalRecord(None, RecordSource.NONE)),
    ):
        watch = JobWatch(job_id, Mailbox(10), Need.NODES, visibility=bob)
        update = PollUpdate(snapshot, jobs_by_id(snapshot.jobs), None, [], None)
        watch.prime(update)
        assert watch.missing_job(update) == job_id  # looked up, as a missing one is
        update.finals = {job_id: final}
        watch.on_poll(update)
        assert watch.mailbox.closed
        [event] = drained(watch.mailbox)
        ends.append(dataclasses.replace(event, job_id="<ID>"))
    assert ends[0] == ends[1]
    assert (ends[0].kind, ends[0].record, ends[0].snapshot) == (EventKind.UNKNOWN, None, None)


def drained(mailbox: Mailbox) -> list[JobEventData]:
    items = []
    while mailbox.qsize():
        item = mailbox._queue.get_nowait()
        if isinstance(item, JobEventData):
            items.append(item)
    return items


async def test_the_cost_of_his_query_says_nothing_of_how_many_jobs_she_has(jobs: Jobs) -> None:
    """Under `own`, bob's queries are costed by the page-size limit, not the cluster's job count:
    the refusal he gets (and whether he gets one) is the same before and after alice submits."""
    settings = own_settings(max_cost=100)  # within: an admin's warm-up; beyond: bob's listing
    query = "{ cluster { nodes { jobs { displayId } } } }"
    warm = "{ cluster { nodes { name } jobs(first: 0) { totalCount } } }"
    transport = CountingTransport(LocalTransport())
    async with app_client(settings, {"local": transport}) as client:

        async def as_bob() -> dict[str, Any]:
            response = await client.post(
                "/graphql", json={"query": query}, headers={"Authorization": "Bearer bob-token"}
            )
            body: dict[str, Any] = response.json()
            return body

        api = OwnApi(client, transport)
        await api.raw("carol", warm)  # an admin's read tells the server the cluster's size
        before = await as_bob()
        sbatch = ("sbatch", "--hold", "--parsable", "--array=1-5", "--job-name=count-probe")
        submitted = await asyncio.to_thread(
            subprocess.run,
            ["runuser", "-u", "alice", "--", *sbatch, "-o", "/dev/null", "--wrap=true"],
            capture_output=True,
            text=True,
            check=True,
            cwd="/tmp",
        )
        job_id = submitted.stdout.strip().split(";")[0]
        try:
            await api.raw("carol", warm)
            after = await as_bob()
        finally:
            scancel(job_id)
    assert before["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", before
    assert after == before


async def test_a_name_forging_bobs_user_id_never_shows_her_job_to_him(
    own_api: OwnApi, unix_users: None
) -> None:
    """A job by id read from an scontrol session (a query without output paths): alice names
    her job so that scontrol's line says `UserId=bob(1002)` after its name. The session's answer
    is refused (resolvers/slurm/job_lookup.py) and squeue's row says alice: bob gets null, as
    for her plain job, which the session does answer; alice gets both as hers."""
    forged = sbatch("--hold", "-J", "mine UserId=bob(1002) GroupId=bob(1002)", "--wrap", "true",
                    user="alice")  # fmt: skip
    plain = sbatch("--hold", "-J", "plain", "--wrap", "true", user="alice")
    query = "query($id: String!) { cluster { job(id: $id) { displayId user name state } } }"
    try:
        inner = own_api.transport.inner
        stats = inner.session_stats if isinstance(inner, LocalTransport) else None
        before = None if stats is None else (stats.answered, stats.declined)
        for job_id in (forged, plain):
            assert json.loads(await own_api.raw("bob", query, id=job_id))["data"] == {
                "cluster": {"job": None}
            }
            hers = json.loads(await own_api.raw("alice", query, id=job_id))["data"]
            assert hers["cluster"]["job"]["user"] == "alice"
        if stats is not None and before is not None:
            # bob's and alice's lookups of each: the forged one refused twice, the plain one
            # answered twice (bob's by a row of alice's, which his users filter leaves out).
            assert (stats.answered - before[0], stats.declined - before[1]) == (2, 2)
    finally:
        slurm("scancel", forged, plain)
