"""Mutations on the real cluster, as real Unix users, through every transport."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from typing import Any

import pytest

from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS, UserApi
from tests.support import oracle
from tests.support.app import app_client
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

JOB_FIELDS = """displayId jobId user name state reason comment clientMutationId timeLimitMinutes
  arrayJobId arrayTaskId dependency partition { name }"""

SUBMIT = f"""mutation($input: SubmitJobInput!, $cluster: String) {{
  submitJob(input: $input, cluster: $cluster) {{
    __typename
    ... on JobSubmitted {{ created clientMutationId job {{ {JOB_FIELDS} }} }}
    ... on SubmitRejected {{ code message field clientMutationId }}
  }}
}}"""


def action(name: str, arguments: str = "", declare: str = "") -> str:
    return f"""mutation($id: String!{declare}) {{
  {name}(id: $id{arguments}) {{
    __typename
    ... on JobActionDone {{ job {{ {JOB_FIELDS} }} }}
    ... on JobActionRejected {{ code message field }}
  }}
}}"""


CANCEL = action("cancelJob")
HOLD = action("holdJob")
RELEASE = action("releaseJob")
REQUEUE = action("requeueJob", ", hold: $hold", ", $hold: Boolean")
UPDATE = action("updateJob", ", input: $input", ", $input: UpdateJobInput!")
JOB = f"query($id: String!) {{ cluster {{ job(id: $id) {{ {JOB_FIELDS} }} }} }}"
SLEEP = "#!/bin/sh\nsleep 30\n"
QUICK = "#!/bin/sh\necho done\n"


async def submit(api: UserApi, user: str, **fields: Any) -> dict[str, Any]:
    body = await api.as_user(user, SUBMIT, input={"script": SLEEP, **fields})
    payload: dict[str, Any] = body["data"]["submitJob"]
    return payload


async def submitted(api: UserApi, user: str, **fields: Any) -> dict[str, Any]:
    payload = await submit(api, user, **fields)
    assert payload["__typename"] == "JobSubmitted", payload
    job: dict[str, Any] = payload["job"]
    return job


async def act(api: UserApi, user: str, query: str, job_id: str, **more: Any) -> dict[str, Any]:
    body = await api.as_user(user, query, id=job_id, **more)
    (payload,) = body["data"].values()
    result: dict[str, Any] = payload
    return result


def squeue_json(job_id: str | int) -> dict[str, Any]:
    """Slurm's own view of a job (`squeue --json`, independent of our parser), with the
    fields these tests read made the same across Slurm versions."""
    wanted = int(str(job_id).split("_")[0])
    for job in oracle.squeue_json():
        if job["job_id"] == wanted:
            job["job_state"] = oracle.first_state(job["job_state"])
            job["time_limit"] = oracle.number(job["time_limit"])
            return job
    raise AssertionError(f"squeue does not know job {job_id}")


def scancel(job_id: str | int) -> None:
    subprocess.run(["scancel", str(job_id)], check=False, timeout=30)


async def wait_for(api: UserApi, user: str, job_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = (await api.as_user(user, JOB, id=job_id))["data"]["cluster"]["job"]
        if job["state"] in states or time.monotonic() > deadline:
            assert job["state"] in states, job
            return job
        await asyncio.sleep(0.2)


async def test_submit_runs_as_the_requesting_user_in_one_round_trip(user_api: UserApi) -> None:
    """alice's job belongs to alice in Slurm, and submitting it (and reading it back) costs
    exactly one transport call."""
    before = user_api.transport.calls
    payload = await submit(user_api, "alice", name="mine", partition="batch", hold=True)
    assert user_api.transport.calls - before == 1
    assert payload["__typename"] == "JobSubmitted" and payload["created"] is True
    job = payload["job"]
    try:
        assert job["user"] == "alice" and job["name"] == "mine"
        assert job["state"] == "PENDING" and job["reason"] == "JobHeldUser"
        assert squeue_json(job["displayId"])["user_name"] == "alice"
    finally:
        scancel(job["jobId"])


async def test_another_user_cannot_control_my_job_but_an_admin_can(user_api: UserApi) -> None:
    """bob's cancel, hold, release, requeue and update of alice's job are refused by Slurm itself
    (PERMISSION_DENIED); carol, an administrator, can cancel it."""
    job = await submitted(user_api, "alice", partition="batch", hold=True)
    try:
        for query, more in (
            (CANCEL, {}),
            (HOLD, {}),
            (RELEASE, {}),
            (REQUEUE, {"hold": True}),
            (UPDATE, {"input": {"name": "mine"}}),
        ):
            refused = await act(user_api, "bob", query, job["displayId"], **more)
            assert refused["__typename"] == "JobActionRejected", refused
            assert refused["code"] == "PERMISSION_DENIED", refused
        assert squeue_json(job["displayId"])["job_state"] == "PENDING"
        done = await act(user_api, "carol", CANCEL, job["displayId"])
        assert done["__typename"] == "JobActionDone", done
        assert done["job"]["state"] == "CANCELLED"
        assert squeue_json(job["displayId"])["job_state"] == "CANCELLED"
    finally:
        scancel(job["jobId"])


async def test_hold_release_then_the_job_runs(user_api: UserApi) -> None:
    """A job held at submission stays pending; hold and release act on it; released, it runs."""
    job = await submitted(user_api, "alice", partition="batch", script=SLEEP)
    try:
        held = await act(user_api, "alice", HOLD, job["displayId"])
        assert held["__typename"] == "JobActionDone", held
        assert held["job"]["reason"] == "JobHeldUser"
        released = await act(user_api, "alice", RELEASE, job["displayId"])
        assert released["__typename"] == "JobActionDone", released
        assert released["job"]["reason"] != "JobHeldUser"
        await wait_for(user_api, "alice", job["displayId"], {"RUNNING"})
    finally:
        scancel(job["jobId"])


async def test_requeue_a_running_job(user_api: UserApi) -> None:
    """A running job requeued goes back to pending; requeued with hold, it is held."""
    plain = await submitted(user_api, "alice", partition="batch")
    holding = await submitted(user_api, "alice", partition="batch")
    try:
        for job in (plain, holding):
            await wait_for(user_api, "alice", job["displayId"], {"RUNNING"})
        requeued = await act(user_api, "alice", REQUEUE, plain["displayId"], hold=False)
        assert requeued["__typename"] == "JobActionDone", requeued
        assert requeued["job"]["state"] in ("PENDING", "REQUEUED", "COMPLETING")
        held = await act(user_api, "alice", REQUEUE, holding["displayId"], hold=True)
        assert held["__typename"] == "JobActionDone", held
        job_now = await wait_for(user_api, "alice", holding["displayId"], {"PENDING"})
        assert "held" in (job_now["reason"] or "").lower(), job_now
        assert squeue_json(holding["jobId"])["job_state"] == "PENDING"
    finally:
        scancel(plain["jobId"])
        scancel(holding["jobId"])


async def test_update_time_limit_name_and_comment(user_api: UserApi) -> None:
    """updateJob changes what Slurm stores, and the answer shows the new values."""
    job = await submitted(user_api, "alice", partition="batch", hold=True, timeLimitMinutes=30)
    try:
        changes = {"timeLimitMinutes": 7, "name": "renamed job", "comment": "now with a note"}
        done = await act(user_api, "alice", UPDATE, job["displayId"], input=changes)
        assert done["__typename"] == "JobActionDone", done
        assert done["job"]["timeLimitMinutes"] == 7
        assert (done["job"]["name"], done["job"]["comment"]) == ("renamed job", "now with a note")
        slurm = squeue_json(job["displayId"])
        assert (slurm["time_limit"], slurm["name"]) == (7, "renamed job")
        empty = await act(user_api, "alice", UPDATE, job["displayId"], input={})
        assert (empty["code"], empty["field"]) == ("INVALID_INPUT", "input")
        pending = await act(user_api, "alice", REQUEUE, job["displayId"], hold=False)
        assert pending["code"] == "INVALID_STATE", pending
        assert "pending" in pending["message"]
    finally:
        scancel(job["jobId"])


async def test_array_and_dependency_appear_as_slurm_shows_them(user_api: UserApi) -> None:
    """An array spec and a typed dependency reach Slurm as given."""
    array = await submitted(user_api, "alice", partition="batch", hold=True, array="0-5%2")
    dependent = await submitted(
        user_api,
        "alice",
        partition="batch",
        dependencies=[{"type": "AFTEROK", "jobIds": [str(array["jobId"])]}],
    )
    try:
        slurm_array = squeue_json(str(array["jobId"]))
        assert array["arrayTaskId"] == slurm_array["array_task_string"] == "0-5%2"
        assert array["displayId"] == f"{array['jobId']}_[0-5%2]"
        assert dependent["dependency"] == squeue_json(dependent["displayId"])["dependency"]
        assert dependent["dependency"].startswith(f"afterok:{array['jobId']}")
    finally:
        scancel(array["jobId"])
        scancel(dependent["jobId"])


async def test_slurm_rejections_and_invalid_input_are_typed(user_api: UserApi) -> None:
    """Input errors name their field and cost no round trip; Slurm's refusals carry its
    own words; unknown jobs are JOB_NOT_FOUND."""
    before = user_api.transport.calls
    bad_array = await submit(user_api, "alice", array="1-3;rm")
    assert (bad_array["code"], bad_array["field"]) == ("INVALID_INPUT", "array")
    bad_option = await submit(user_api, "alice", extraOptions=[{"name": "wrap", "value": "id"}])
    assert (bad_option["code"], bad_option["field"]) == ("INVALID_INPUT", "extraOptions[0]")
    no_shebang = await submit(user_api, "alice", script="echo hi")
    assert (no_shebang["code"], no_shebang["field"]) == ("INVALID_INPUT", "script")
    bad_id = await act(user_api, "alice", CANCEL, "1; touch /tmp/x")
    assert bad_id["code"] == "INVALID_INPUT"
    assert user_api.transport.calls == before
    too_big = await submit(user_api, "alice", memoryMb=10_000_000, partition="batch")
    assert too_big["code"] == "SLURM_REJECTED"
    assert "Requested node configuration is not available" in too_big["message"]
    no_partition = await submit(user_api, "alice", partition="nosuch")
    assert no_partition["code"] == "SLURM_REJECTED" and "partition" in no_partition["message"]
    missing = await act(user_api, "alice", HOLD, "99999999")
    assert missing["code"] == "JOB_NOT_FOUND", missing


async def test_environment_reaches_the_job_and_the_servers_does_not(user_api: UserApi) -> None:
    """Variables given in `environment` reach the job verbatim (commas and '=' included), and
    none of the server's own environment does."""
    script = '#!/bin/sh\nprintf "%s|%s|%s" "$GREETING" "${AWS_ACCESS_KEY_ID-unset}" "$HOME"\n'
    job = await submitted(
        user_api,
        "alice",
        partition="batch",
        script=script,
        environment=[{"name": "GREETING", "value": "a,b=c d"}],
    )
    try:
        await wait_for(user_api, "alice", job["displayId"], {"COMPLETED"})
        query = f'{{ cluster {{ job(id: "{job["displayId"]}") {{ output {{ text }} }} }} }}'
        body = await user_api.as_user("alice", query)
        assert body["data"]["cluster"]["job"]["output"]["text"] == "a,b=c d|unset|/home/alice"
    finally:
        scancel(job["jobId"])


async def test_unauthenticated_requests_are_refused(user_api: UserApi) -> None:
    """Without a known bearer token, the API answers 401 UNAUTHENTICATED and runs nothing."""
    before = user_api.transport.calls
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}):
        response = await user_api.client.post(
            "/graphql", json={"query": "{ cluster { jobs { totalCount } } }"}, headers=headers
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    page = await user_api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert user_api.transport.calls == before


async def test_the_writer_reads_its_write_through_a_warm_cache(unix_users: None) -> None:
    """With a 60 s snapshot cache already warm, a query right after a submit or a hold sees
    it: a write drops the cached snapshot."""
    settings = Settings(cache_ttl=60.0, tokens=parse_token_map(TOKENS))
    headers = {"Authorization": "Bearer alice-token"}
    async with app_client(settings, {"local": LocalTransport()}) as client:

        async def run(query: str, **variables: Any) -> dict[str, Any]:
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            data: dict[str, Any] = response.json()["data"]
            return data

        count = "{ cluster { jobs { totalCount } } }"
        warm = (await run(count))["cluster"]["jobs"]["totalCount"]
        job = (await run(SUBMIT, input={"script": SLEEP, "partition": "batch", "hold": True}))[
            "submitJob"
        ]["job"]
        try:
            assert (await run(count))["cluster"]["jobs"]["totalCount"] == warm + 1
            released = await run(RELEASE, id=job["displayId"])
            assert released["releaseJob"]["job"]["reason"] != "JobHeldUser"
            held = await run(HOLD, id=job["displayId"])
            assert held["holdJob"]["job"]["reason"] == "JobHeldUser"
            again = await run(JOB, id=job["displayId"])
            assert again["cluster"]["job"]["reason"] == "JobHeldUser"
        finally:
            scancel(job["jobId"])


async def test_every_mutation_leaves_one_audit_line(user_api: UserApi) -> None:
    """Each mutation logs one structured audit record: who, as which POSIX user, what, on which
    job, with what outcome; refusals included."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    audit = logging.getLogger("slurm_graphql.audit")
    audit.addHandler(handler)
    level = audit.level
    audit.setLevel(logging.INFO)
    try:
        job = await submitted(user_api, "alice", partition="batch", hold=True)
        await act(user_api, "bob", CANCEL, job["displayId"])
        await act(user_api, "carol", CANCEL, job["displayId"])
    finally:
        audit.removeHandler(handler)
        audit.setLevel(level)
        scancel(job["jobId"])
    lines = [record.request for record in records]  # type: ignore[attr-defined]
    assert [(line["operation"], line["identity"], line["outcome"]) for line in lines] == [
        ("submitJob", "alice", "done"),
        ("cancelJob", "bob", "PERMISSION_DENIED"),
        ("cancelJob", "carol", "done"),
    ]
    assert [line["posix_user"] for line in lines][:2] == ["alice", "bob"]
    assert all(line["job_id"] == str(job["jobId"]) for line in lines)
    assert all(line["cluster"] == "local" and line["request_id"] for line in lines)


async def test_a_user_the_head_node_does_not_know_is_refused(unix_users: None) -> None:
    """A token mapped to a user who does not exist on the head node: PERMISSION_DENIED, with
    runuser's own words, and no job."""
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map("ghost-token=ghost"))
    async with app_client(settings, {"local": LocalTransport()}) as client:
        response = await client.post(
            "/graphql",
            json={"query": SUBMIT, "variables": {"input": {"script": SLEEP, "hold": True}}},
            headers={"Authorization": "Bearer ghost-token"},
        )
    payload = response.json()["data"]["submitJob"]
    assert payload["code"] == "PERMISSION_DENIED", payload
    assert "ghost" in payload["message"]
