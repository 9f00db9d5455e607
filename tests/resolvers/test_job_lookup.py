"""A job by id from an scontrol session, read as squeue's row: compared field by field with the
real squeue on the real cluster (both Slurm versions run this file), and refused wherever a
job's owner could make it read two ways. resolvers/slurm/job_lookup.py says why each rule."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator

import pytest

from resolvers.slurm.job_lookup import show_job_as_squeue, squeue_text
from resolvers.slurm.jobs import JobRecord, new_boundary, parse_squeue, squeue_command
from tests.support.scenario import Scenario, sbatch, slurm, wait_for_state
from transport.local import LocalTransport

# Every property of a row but the output patterns, which squeue prints as submitted and
# scontrol expanded (a query reading them never takes this path: JobScope.paths).
PROPERTIES = [name for name in dir(JobRecord) if isinstance(getattr(JobRecord, name), property)]
COMPARED = (
    *(name for name in PROPERTIES if name not in {"stdout_pattern", "stderr_pattern"}),
    *("display_id", "job_id", "user", "state"),
)


def squeue_rows(job_id: str) -> list[JobRecord]:
    boundary = new_boundary()
    command = squeue_command(boundary, [job_id])
    done = subprocess.run(
        command.argv, capture_output=True, check=False, env={**os.environ, **command.env}
    )
    return [row.fields() for row in parse_squeue(done.stdout.decode(errors="replace"), boundary)]


def scontrol_answer(job_id: str) -> str:
    done = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        check=False,
        env={**os.environ, "SLURM_TIME_FORMAT": "%s"},
    )
    return done.stdout.decode(errors="replace")


def translated_rows(job_id: str, users: frozenset[str] | None = None) -> list[JobRecord] | None:
    boundary = new_boundary()
    text = squeue_text(scontrol_answer(job_id), boundary, users)
    return None if text is None else [row.fields() for row in parse_squeue(text, boundary)]


def values(record: JobRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in COMPARED}


@pytest.fixture(scope="module")
def more_jobs(scenario: Scenario, unix_users: None) -> Iterator[dict[str, str]]:
    """Jobs the scenario has not: a signal's end, a node range, days of time limit."""
    jobs = {
        "killed": sbatch("-J", "killed by 9", "--wrap", "kill -9 $$", user="alice"),
        "node range": sbatch("-N", "1-2", "-n", "2", "--hold", "--wrap", "true", user="alice"),
        "days": sbatch("-t", "2-03:04:05", "--hold", "-J", "lasts  days ", "--wrap", "true"),
    }
    wait_for_state(jobs["killed"], "FAILED")
    yield jobs
    slurm("scancel", *jobs.values())


def test_the_scontrol_row_is_squeues_field_by_field(
    scenario: Scenario, more_jobs: dict[str, str]
) -> None:
    plain = {
        "held": scenario.held,
        "pending": scenario.pending,
        "dependent": scenario.dependent,
        "failed": scenario.failed,
        "completed": scenario.completed,
        "cancelled": scenario.cancelled,
        "unlimited": scenario.unlimited,
        "someone else's": scenario.other_user,
        "invalid UTF-8": scenario.invalid_utf8,
        **more_jobs,
    }
    for role, job_id in plain.items():
        expected = squeue_rows(job_id)
        got = translated_rows(job_id)
        assert got is not None, f"the {role} job's answer was refused"
        assert len(expected) == len(got) == 1, role
        assert values(got[0]) == values(expected[0]), role
    killed = translated_rows(more_jobs["killed"])
    assert killed is not None
    assert (killed[0].exit_code, killed[0].signal) == (0, 9)
    assert squeue_rows(more_jobs["node range"])[0].num_nodes == 1
    assert squeue_rows(more_jobs["days"])[0].time_limit_minutes == 2 * 1440 + 3 * 60 + 5


def test_an_array_task_by_its_own_id_is_squeues_row(scenario: Scenario) -> None:
    task = next(r for r in squeue_rows(scenario.array) if r.array_task_id == "1")
    got = translated_rows(str(task.job_id))
    assert got is not None
    assert [values(r) for r in got] == [values(task)]
    assert got[0].display_id == f"{scenario.array}_1"


def test_what_cannot_be_read_one_way_goes_to_squeue(scenario: Scenario) -> None:
    # Several records (an array's tasks), and a comment (an optional key after a user's value).
    assert translated_rows(scenario.array) is None
    assert translated_rows(scenario.running) is None


def test_an_unknown_id_and_anothers_job_under_a_users_filter_are_no_row(
    scenario: Scenario,
) -> None:
    assert squeue_text("", "b0") == ""
    assert translated_rows(scenario.held, users=frozenset({"bob"})) == []
    assert translated_rows(scenario.held, users=frozenset({"root"})) is not None


FORGED_FIELDS = " UserId=bob(1002) GroupId=bob(1002)"


@pytest.mark.parametrize(
    "options",
    [
        # A required key again, written in a name: it would make the job bob's.
        ("-J", "mine" + FORGED_FIELDS),
        # A whole second record after a newline in the name.
        ("-J", "x\nJobId=1 JobName=y" + FORGED_FIELDS),
        # An optional key Slurm prints after the work directory, written in it.
        ("-D", "/tmp/lookup-dir Comment=forged"),
        # A key of a later place in the line, and a key scontrol never prints.
        ("-J", "x BatchHost=n9"),
        ("-J", "x Invented=1"),
        # squeue's own separators.
        ("-J", "x\x1fy"),
    ],
    ids=["required key", "second record", "optional key", "later key", "unknown", "separator"],
)
def test_alice_cannot_make_her_job_read_otherwise(
    unix_users: None, options: tuple[str, ...]
) -> None:
    if options[0] == "-D":
        os.makedirs(options[1], exist_ok=True)
        os.chmod(options[1], 0o777)
    job_id = sbatch("--hold", *options, "--wrap", "true", user="alice")
    try:
        assert translated_rows(job_id) is None
        [row] = squeue_rows(job_id)
        assert row.user == "alice"
    finally:
        slurm("scancel", job_id)


async def test_a_lookup_is_answered_by_a_session_or_else_by_squeue(scenario: Scenario) -> None:
    """Through the transport: the session's row where it is proven, squeue's otherwise; the
    same rows either way, and /metrics' counts say which answered."""
    transport = LocalTransport(sessions=1)
    try:
        for job_id, answered, declined in ((scenario.held, 1, 0), (scenario.running, 1, 1)):
            boundary = new_boundary()
            command = squeue_command(boundary, [job_id])
            looked_up = dataclasses.replace(
                command, interactive=show_job_as_squeue(job_id, boundary)
            )
            [result] = await transport.run([looked_up])
            stats = transport.session_stats
            assert stats is not None
            assert (stats.answered, stats.declined) == (answered, declined)
            rows = [row.fields() for row in parse_squeue(result.stdout, boundary)]
            assert [values(r) for r in rows] == [values(r) for r in squeue_rows(job_id)]
    finally:
        await transport.aclose()
