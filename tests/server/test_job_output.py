"""Job.output: the end of a job's output file, read as the requesting user."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserApi
from tests.server.test_mutations import RELEASE, act, scancel, submitted, wait_for

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
    """A held job has no output yet, whatever lies at its path: a slurm-<id>.out an earlier job
    of the same id left in alice's home (job ids start again with each cluster state) reads
    null, without an error, and bob is refused as for a job that ran; once the job has run,
    alice reads what it wrote, and none of the stale file."""
    job = await submitted(
        user_api, "alice", partition="batch", hold=True, script="#!/bin/sh\necho fresh\n"
    )
    stale = Path(pwd.getpwnam("alice").pw_dir) / f"slurm-{job['jobId']}.out"
    try:
        assert (await read(user_api, "alice", job["displayId"], "STDOUT", 100))["data"]["cluster"][
            "job"
        ]["stdoutPath"] == str(stale)
        plant(stale, "stale output of an earlier job\n", "alice")
        body = await read(user_api, "alice", job["displayId"], "STDOUT", 100)
        assert body["data"]["cluster"]["job"]["output"] is None
        assert "errors" not in body
        too_much = await read(user_api, "alice", job["displayId"], "STDOUT", 10**9)
        assert too_much["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        refused = await read(user_api, "bob", job["displayId"], "STDOUT", 100)
        assert refused["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", refused

        released = await act(user_api, "alice", RELEASE, job["displayId"])
        assert released["__typename"] == "JobActionDone", released
        await wait_for(user_api, "alice", job["displayId"], {"COMPLETED"})
        ran = await read(user_api, "alice", job["displayId"], "STDOUT", 100)
        assert ran["data"]["cluster"]["job"]["output"]["text"] == "fresh\n", ran
    finally:
        scancel(job["jobId"])
        stale.unlink(missing_ok=True)


def plant(path: Path, text: str, owner: str) -> None:
    """A file at `path` owned by `owner`, as `owner` (or a job of theirs) would have left it."""
    path.write_text(text)
    user = pwd.getpwnam(owner)
    os.chown(path, user.pw_uid, user.pw_gid)


async def test_many_outputs_cost_one_extra_round_trip(user_api: UserApi) -> None:
    """Outputs of every job in a listing are read in one batch, after the snapshot."""
    script = "#!/bin/sh\necho done\n"
    jobs = [await submitted(user_api, "alice", partition="batch", script=script) for _ in range(3)]
    try:
        # Jobs that ran: a job that has not started has no output to read.
        for job in jobs:
            await wait_for(user_api, "alice", job["displayId"], {"COMPLETED"})
        before = user_api.transport.calls
        query = (
            # `first` bounds the reads: without it the page could hold 10,000 (server/cost.py).
            "query($ids: [String!]) { cluster { jobs(filter: {ids: $ids}, first: 3) "
            "{ totalCount edges { node { output { text } } } } } }"
        )
        body = await user_api.as_user("alice", query, ids=[job["displayId"] for job in jobs])
        assert body["data"]["cluster"]["jobs"]["totalCount"] == 3
        assert "errors" not in body, body
        edges = body["data"]["cluster"]["jobs"]["edges"]
        assert [edge["node"]["output"]["text"] for edge in edges] == ["done\n"] * 3
        assert user_api.transport.calls - before == 2
    finally:
        home = Path(pwd.getpwnam("alice").pw_dir)
        for job in jobs:
            scancel(job["jobId"])
            (home / f"slurm-{job['jobId']}.out").unlink(missing_ok=True)
