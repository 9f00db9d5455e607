"""The sacct parser on captures from the real completion log, and on output a job name forges."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolvers.slurm.errors import ParseError
from resolvers.slurm.sacct import SACCT_FIELDS, parse_sacct, sacct_command

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "22.05" / "sacct"


def test_finished_jobs_keep_their_state_and_exit_code() -> None:
    """A job that exited 3 is FAILED with code 3; a cancelled one CANCELLED; one that ran, 0."""
    records = {r.name: r for r in parse_sacct((GOLDEN / "completion-log.stdout").read_text())}
    assert (records["exit3"].state, records["exit3"].exit_code) == ("FAILED", 3)
    assert (records["done"].state, records["done"].exit_code) == ("COMPLETED", 0)
    assert records["cancelled"].state == "CANCELLED"
    assert all(r.user == "root" and r.end_time for r in records.values())


def test_the_completion_log_loses_the_state_of_a_name_with_spaces() -> None:
    """filetxt cuts `fails with 3` at its first space and then prints no state: it reads as ""."""
    text = (GOLDEN / "completion-log-names-with-spaces.stdout").read_text()
    records = {r.name: r for r in parse_sacct(text)}
    assert records["fails"].state == ""
    assert records["fails"].exit_code == 3


def test_an_unknown_job_gives_no_rows() -> None:
    """sacct prints nothing for a job it does not know."""
    assert parse_sacct((GOLDEN / "completion-log-unknown-job.stdout").read_text()) == []


def _row(job_id: int, state: str, name: str) -> str:
    values = {field: "" for field in SACCT_FIELDS}
    values.update(JobIDRaw=str(job_id), JobID=str(job_id), State=state, JobName=name)
    return "\x1f".join(values[field] for field in SACCT_FIELDS)


def test_a_name_with_a_newline_continues_the_name() -> None:
    """A line that does not start with a job id belongs to the name on the line before."""
    [record] = parse_sacct(_row(5, "COMPLETED", "two\nlines") + "\n")
    assert record.name == "two\nlines"
    assert record.state == "COMPLETED"


def test_a_name_forging_a_second_row_for_its_job_is_refused() -> None:
    """A name that prints a whole row with its own job's id cannot replace the real one."""
    forged = _row(5, "COMPLETED", "x\n" + _row(5, "CANCELLED", "y"))
    with pytest.raises(ParseError):
        parse_sacct(forged)


def test_the_command_reads_the_completion_log_only_when_asked() -> None:
    """`--completion` (sacct -c) is added for clusters without slurmdbd."""
    assert "--completion" not in sacct_command([1]).argv
    assert "--completion" in sacct_command([1, 2], completion_log=True).argv
    assert "--jobs=1,2" in sacct_command([1, 2]).argv
