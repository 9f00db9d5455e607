"""Job.output: the end of a job's output file, read as the requesting user."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import UserApi
from tests.server.test_mutations import scancel, submitted, wait_for

pytestmark = pytest.mark.cluster

# 100 lines of text, then a byte that is not UTF-8, on stdout; one line on stderr.
SCRIPT = """#!/bin/sh
i=0
while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done
printf 'bad \\377 byte\\n'
echo "to stderr" >&2
"""
OUTPUT = """query($id: String!, $stream: OutputStream!, $tail: Int!) {
  cluster { job(id: $id) { stdoutPath output(stream: $stream, tailBytes: $tail) {
    path text truncated sizeBytes } } }
}"""


async def read(api: UserApi, user: str, job_id: str, stream: str, tail: int) -> dict[str, Any]:
    return await api.as_user(user, OUTPUT, id=job_id, stream=stream, tail=tail)


async def test_owner_reads_output_and_others_cannot(user_api: UserApi) -> None:
    """alice reads her finished job's stdout and stderr (bad bytes replaced, long files cut to
    the tail asked for); bob, reading the same job, is refused by the file system."""
    job = await submitted(
        user_api, "alice", partition="batch", script=SCRIPT, stderrPath="job-%j.err"
    )
    try:
        await wait_for(user_api, "alice", job["displayId"], {"COMPLETED"})
        whole = (await read(user_api, "alice", job["displayId"], "STDOUT", 65536))["data"]
        output = whole["cluster"]["job"]["output"]
        expected = "".join(f"line {i}\n" for i in range(100)) + "bad \ufffd byte\n"
        assert output["text"] == expected
        assert output["truncated"] is False
        assert output["sizeBytes"] == len(expected.encode()) - len("\ufffd".encode()) + 1
        assert output["path"] == whole["cluster"]["job"]["stdoutPath"]
        tail = (await read(user_api, "alice", job["displayId"], "STDOUT", 9))["data"]
        assert tail["cluster"]["job"]["output"]["text"] == "d \ufffd byte\n"
        assert tail["cluster"]["job"]["output"]["truncated"] is True
        err = (await read(user_api, "alice", job["displayId"], "STDERR", 100))["data"]
        assert err["cluster"]["job"]["output"]["text"] == "to stderr\n"
        assert err["cluster"]["job"]["output"]["path"] == f"/home/alice/job-{job['jobId']}.err"

        refused = await read(user_api, "bob", job["displayId"], "STDOUT", 100)
        assert refused["data"]["cluster"]["job"]["output"] is None
        (error,) = refused["errors"]
        assert error["extensions"]["code"] == "PERMISSION_DENIED"
        assert error["path"] == ["cluster", "job", "output"]
    finally:
        scancel(job["jobId"])


async def test_output_of_a_job_not_started_is_null(user_api: UserApi) -> None:
    """A held job has no output file yet: output is null, without an error. (Its own file
    name: job ids start again with each new cluster state, and an earlier cluster's job of the
    same id may have left slurm-<id>.out in alice's home.)"""
    name = f"never-started-{uuid.uuid4().hex[:8]}-%j.out"
    job = await submitted(user_api, "alice", partition="batch", hold=True, stdoutPath=name)
    try:
        body = await read(user_api, "alice", job["displayId"], "STDOUT", 100)
        assert body["data"]["cluster"]["job"]["output"] is None
        assert "errors" not in body
        too_much = await read(user_api, "alice", job["displayId"], "STDOUT", 10**9)
        assert too_much["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    finally:
        scancel(job["jobId"])


async def test_many_outputs_cost_one_extra_round_trip(user_api: UserApi) -> None:
    """Outputs of every job in a listing are read in one batch, after the snapshot."""
    jobs = [await submitted(user_api, "alice", partition="batch", hold=True) for _ in range(3)]
    try:
        before = user_api.transport.calls
        query = (
            # `first` bounds the reads: without it the page could hold 10,000 (server/cost.py).
            "query($ids: [String!]) { cluster { jobs(filter: {ids: $ids}, first: 3) "
            "{ totalCount edges { node { output { text } } } } } }"
        )
        body = await user_api.as_user("alice", query, ids=[job["displayId"] for job in jobs])
        assert body["data"]["cluster"]["jobs"]["totalCount"] == 3
        assert "errors" not in body, body
        assert user_api.transport.calls - before == 2
    finally:
        for job in jobs:
            scancel(job["jobId"])
