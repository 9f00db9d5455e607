"""No injection: hostile values through every string argument of every mutation and query.

Each value either comes back from Slurm byte for byte (job names, comments, scripts, paths,
environment values are stored as given) or is refused as invalid input before anything runs.
Either way the canary file, which every shell-looking value tries to create, never appears.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from resolvers.slurm.job_fields import split_comment
from tests.conftest import UserApi
from tests.server.test_mutations import SUBMIT, UPDATE

pytestmark = pytest.mark.cluster

# Refusals of a value that is well-formed but names nothing Slurm knows (a partition "a").
REFUSED = {"INVALID_INPUT", "SLURM_REJECTED", "JOB_NOT_FOUND"}
QUERY_REFUSED = {"BAD_USER_INPUT", "CLUSTER_NOT_FOUND"}
CONCURRENCY = 8


EMPTY = "#!/bin/sh\n"
SUBMIT_OUTCOME = """{ __typename ... on JobSubmitted { job { jobId } }
  ... on SubmitRejected { code message field } }"""
ACTION_OUTCOME = "{ __typename ... on JobActionRejected { code message field } }"
# Submit fields Slurm stores as given once they pass validation (aliases name them).
STORED_FIELDS = ("array", "clientMutationId", "workDir", "stdoutPath", "stderrPath")
CHECKED = {
    **{
        field: f"submitJob(input: {{script: $s, hold: true, {field}: $v}})"
        for field in ("partition", "account", "qos", "reservation", "gres", "constraint")
    },
    **{
        field: f"submitJob(input: {{script: $s, hold: true, {field}: $v}})"
        for field in STORED_FIELDS
    },
    "optionName": 'submitJob(input: {script: $s, extraOptions: [{name: $v, value: "1"}]})',
    "optionValue": 'submitJob(input: {script: $s, extraOptions: [{name: "nice", value: $v}]})',
    "dependency": "submitJob(input: {script: $s, dependencies: [{type: AFTEROK, jobIds: [$v]}]})",
    "variableName": 'submitJob(input: {script: $s, environment: [{name: $v, value: "x"}]})',
    "cancel": "cancelJob(id: $v)",
    "hold": "holdJob(id: $v)",
    "release": "releaseJob(id: $v)",
    "requeue": "requeueJob(id: $v, hold: true)",
    "update": 'updateJob(id: $v, input: {name: "x"})',
    "signal": "cancelJob(id: $t, signal: $v)",
    **{
        f"update{field}": f"updateJob(id: $t, input: {{{field}: $v}})"
        for field in ("partition", "qos", "account", "reservation")
    },
}
CHECKED_FIELDS = (
    "mutation($v: String!, $s: String!, $t: String!) {\n"
    + "\n".join(
        f"  {alias}: {call} {SUBMIT_OUTCOME if call.startswith('submitJob') else ACTION_OUTCOME}"
        for alias, call in CHECKED.items()
    )
    + "\n}"
)


def hostile_values(canary: str) -> list[str]:
    """Shell metacharacters, option look-alikes, quotes, globs, control and unicode text."""
    attacks = [
        "$(touch {c})",
        "`touch {c}`",
        "; touch {c}",
        "&& touch {c}",
        "|| touch {c}",
        "| touch {c}",
        "& touch {c} &",
        "\ntouch {c}\n",
        "\r\ntouch {c}",
        "'; touch {c}; '",
        '"; touch {c}; "',
        "$(touch${{IFS}}{c})",
        "${{IFS}}touch${{IFS}}{c}",
        "> {c}",
        ">> {c}",
        "< /etc/passwd > {c}",
        "$((1+1))$(touch {c})",
        "\\$(touch {c})",
        "'$(touch {c})'",
        '"$(touch {c})"',
        "x\n#SBATCH --wrap=touch {c}",
        "--wrap=touch {c}",
        "-o {c}",
        "--output={c}",
        "--chdir=/tmp --wrap='touch {c}'",
        "JobId=1 Name=$(touch {c})",
        "Comment=`touch {c}`",
        "a=b $(touch {c})",
        "$(printf 'touch {c}' | sh)",
        "x; exec sh -c 'touch {c}'",
        "*; touch {c}",
        "{{touch,{c}}}",
        "a\x00$(touch {c})",
    ]
    plain = [
        "*",
        "?",
        "[a-z]*",
        "~",
        "~root",
        "$HOME",
        "${PATH}",
        "%j",
        "%x%u%%",
        "\\",
        "\\\\",
        '"',
        "'",
        "`",
        "$",
        "!",
        "!!",
        "#",
        "--help",
        "-h",
        "--version",
        "-",
        "--",
        ",",
        ":",
        "=",
        "a,b",
        "a:b",
        "x=y",
        "\t",
        "\x1b[31mred",
        "\x1f",
        "\x1e",
        "\x7f",
        "\x00",
        "nul\x00byte",
        "日本語のジョブ",
        "emoji 🚀 job",
        "\u202eRTL",
        "\u2028line",
        "\ufeffBOM",
        "Ω≈ç√∫",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "/etc/shadow",
        "' OR 1=1 --",
        "%s%s%s%n",
        "A" * 2000,
        "",
        " ",
        "  leading",
        "trailing  ",
        "a\nb",
        "\r",
    ]
    values = list(plain)
    for attack in attacks:
        text = attack.format(c=canary)
        values += [text, f"job {text}", f"{text} tail", f"-{text}", f"a,b:{text}"]
    return list(dict.fromkeys(values))


def slurm_jobs() -> dict[int, dict[str, Any]]:
    """Every job as `squeue --json` shows it (Slurm's own words, not our parser's)."""
    out = subprocess.run(
        ["squeue", "--all", "--states=all", "--json"], capture_output=True, check=True, timeout=60
    ).stdout
    return {job["job_id"]: job for job in json.loads(out.decode("utf-8", "replace"))["jobs"]}


def batch_script(job_id: int) -> str:
    out = subprocess.run(
        ["scontrol", "write", "batch_script", str(job_id), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return out.decode("utf-8", "replace")


def stored_value(job: dict[str, Any], field: str) -> str:
    """What Slurm stored for a submit field; relative paths are kept relative to the work
    directory (the user's home), so they are compared as the client gave them."""
    if field == "array":
        return str(job["array_task_string"])
    if field == "clientMutationId":
        return str(split_comment(job["comment"])[1])
    if field == "workDir":
        return str(job["current_working_directory"])
    # squeue's own column, not its JSON: Slurm 24.11's JSON expands the pattern (%j and the
    # like), the column prints it as stored on 22.05 and 24.11 alike.
    path = squeue_column(int(job["job_id"]), "STDOUT" if field == "stdoutPath" else "STDERR")
    return path.removeprefix(str(job["current_working_directory"]) + "/")


def squeue_column(job_id: int, column: str) -> str:
    """One column of one job as squeue prints it, ended by a random boundary (a value may hold
    any character but NUL)."""
    boundary = "\x1e" + secrets.token_hex(8)  # not a digit first: squeue would read a width
    out = subprocess.run(
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={job_id}",
            f"--Format={column}:0{boundary}",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return out.decode("utf-8", "replace").split(boundary, 1)[0]


def check_stored(
    submitted: dict[int, str], stored: dict[int, tuple[str, str]], counted: dict[str, int]
) -> None:
    """Slurm holds every accepted value exactly as sent."""
    jobs = slurm_jobs()
    for job_id, (field, value) in stored.items():
        assert stored_value(jobs[job_id], field) == value, (job_id, field)
        counted["verbatim"] += 1
    for job_id, value in submitted.items():
        slurm = jobs[job_id]
        assert (slurm["name"], slurm["comment"]) == (value, value), job_id
        assert batch_script(job_id) == "#!/bin/sh\n" + value
        counted["verbatim"] += 1


def clean_up(job_ids: list[int], canary: Path) -> None:
    for job_id in job_ids:
        subprocess.run(["scancel", str(job_id)], check=False, timeout=30)
    canary.unlink(missing_ok=True)


async def bounded(work: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(step: Callable[[], Awaitable[None]]) -> None:
        async with slots:
            await step()

    # A TaskGroup cancels and awaits the other steps when one fails.
    async with asyncio.TaskGroup() as group:
        for step in work:
            group.create_task(one(step))


@pytest.mark.timeout(300)
async def test_hostile_values_are_stored_verbatim_or_refused(user_api: UserApi) -> None:
    """At least 200 hostile values, through every string argument of every mutation and query,
    over each transport: no canary file, every value verbatim in Slurm or refused."""
    canary = Path(f"/tmp/sgq-canary-{secrets.token_hex(6)}")
    values = hostile_values(str(canary))
    assert len(values) >= 200
    submitted: dict[int, str] = {}  # job id -> the value its name, comment, script carry
    stored: dict[int, tuple[str, str]] = {}  # job id -> (field, value) of other accepted fields
    counted: dict[str, int] = {"verbatim": 0, "refused": 0}

    async def mutate(query: str, **variables: Any) -> dict[str, Any]:
        body = await user_api.as_user("alice", query, **variables)
        assert "errors" not in body, body
        (payload,) = body["data"].values()
        result: dict[str, Any] = payload
        return result

    def refused(payload: dict[str, Any], allowed: set[str] = REFUSED) -> None:
        assert payload["__typename"].endswith("Rejected"), payload
        assert payload["code"] in allowed, payload
        counted["refused"] += 1

    # Held jobs that updates rename, one per concurrent step, so each answer shows its value.
    targets: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(CONCURRENCY):
        held = await mutate(SUBMIT, input={"script": "#!/bin/sh\n", "hold": True})
        targets.put_nowait(str(held["job"]["jobId"]))
    target = await targets.get()  # refusals only: never changed

    def free_text_submit(value: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            payload = await mutate(
                SUBMIT,
                input={
                    "script": "#!/bin/sh\n" + value,
                    "name": value,
                    "comment": value,
                    "environment": [{"name": "HOSTILE", "value": value}],
                    "hold": True,
                },
            )
            if payload["__typename"] == "JobSubmitted":
                submitted[payload["job"]["jobId"]] = value
            else:
                refused(payload, {"INVALID_INPUT"})

        return step

    def checked_fields(value: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            # One document of aliased mutations: each is refused (or accepted) on its own.
            body = await user_api.as_user("alice", CHECKED_FIELDS, v=value, s=EMPTY, t=target)
            assert "errors" not in body, body
            for alias, payload in body["data"].items():
                if payload["__typename"] == "JobSubmitted":
                    assert alias in STORED_FIELDS, payload
                    stored[payload["job"]["jobId"]] = (alias, value)
                else:
                    refused(payload, {"INVALID_INPUT"} if alias in STORED_FIELDS else REFUSED)
            cluster_body = await user_api.as_user(
                "alice",
                'mutation($c: String) { holdJob(id: "1", cluster: $c) { __typename } }',
                c=value,
            )
            assert cluster_body["errors"][0]["extensions"]["code"] == "CLUSTER_NOT_FOUND"
            counted["refused"] += 1

        return step

    def update_and_query(value: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            mine = await targets.get()
            try:
                payload = await mutate(UPDATE, id=mine, input={"name": value, "comment": value})
            finally:
                targets.put_nowait(mine)
            if payload["__typename"] == "JobActionDone":
                assert payload["job"]["name"] == value, payload
                assert payload["job"]["comment"] == value, payload
                counted["verbatim"] += 1
            else:
                refused(payload, {"INVALID_INPUT"})
            body = await user_api.as_user(
                "alice",
                "query($v: String!) { cluster { partition(name: $v) { name } node(name: $v)"
                " { name } jobs(filter: {users: [$v], partitions: [$v], names: [$v]})"
                " { totalCount } } }",
                v=value,
            )
            if "errors" in body:
                assert body["errors"][0]["extensions"]["code"] in QUERY_REFUSED, body
            else:
                cluster = body["data"]["cluster"]
                assert cluster["partition"] is None and cluster["node"] is None
                assert cluster["jobs"]["totalCount"] == 0
            for query in (
                "query($v: String!) { cluster { job(id: $v) { displayId } } }",
                "query($v: String!) { cluster { jobs(filter: {ids: [$v]}) { totalCount } } }",
                "query($v: String!) { cluster { jobs(after: $v) { totalCount } } }",
                "query($v: String!) { cluster(name: $v) { name } }",
            ):
                body = await user_api.as_user("alice", query, v=value)
                assert body["errors"][0]["extensions"]["code"] in QUERY_REFUSED, body

        return step

    try:
        work = [free_text_submit(v) for v in values]
        work += [checked_fields(v) for v in values]
        work += [update_and_query(v) for v in values]
        await bounded(work, CONCURRENCY)
        await asyncio.to_thread(check_stored, submitted, stored, counted)
        assert not await asyncio.to_thread(canary.exists), "a hostile value was run by a shell"
    finally:
        renamed = [int(targets.get_nowait()) for _ in range(targets.qsize())]
        await asyncio.to_thread(clean_up, [*submitted, *stored, *renamed, int(target)], canary)
    print(f"{user_api.kind}: {len(values)} hostile values, {counted}")
