"""The sacct parser on captures from the real completion log, and on output a job name forges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resolvers.events import FinalRecord, RecordSource
from resolvers.final_state import parse_lookup
from resolvers.slurm.errors import ParseError
from resolvers.slurm.job_details import parse_job_details
from resolvers.slurm.jobs import new_boundary
from resolvers.slurm.sacct import (
    SACCT_FIELDS,
    AccountingRecord,
    delimiter,
    parse_sacct,
    sacct_command,
)
from tests.support.sacct import sacct_boundary
from transport.base import CommandResult

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "22.05" / "sacct"
# Rows these tests write themselves are delimited as a call's would be.
BOUNDARY = new_boundary()


def _parse(case: str) -> list[AccountingRecord]:
    """A captured case, parsed with the delimiter its command asked for."""
    result = _result(case)
    return parse_sacct(result.stdout, sacct_boundary(result.argv))


def test_finished_jobs_keep_their_state_and_exit_code() -> None:
    """A job that exited 3 is FAILED with code 3; a cancelled one CANCELLED; one that ran, 0."""
    records = {r.name: r for r in _parse("completion-log")}
    assert (records["exit3"].state, records["exit3"].exit_code) == ("FAILED", 3)
    assert (records["done"].state, records["done"].exit_code) == ("COMPLETED", 0)
    assert records["cancelled"].state == "CANCELLED"
    assert all(r.user == "root" and r.end_time for r in records.values())


def test_the_completion_log_loses_the_state_of_a_name_with_spaces() -> None:
    """filetxt cuts `fails with 3` at its first space and then prints no state: it reads as ""."""
    records = {r.name: r for r in _parse("completion-log-names-with-spaces")}
    assert records["fails"].state == ""
    assert records["fails"].exit_code == 3


def test_an_unknown_job_gives_no_rows() -> None:
    """sacct prints nothing for a job it does not know."""
    assert _parse("completion-log-unknown-job") == []


def _row(job_id: int, state: str, name: str) -> str:
    values = {field: "" for field in SACCT_FIELDS}
    values.update(JobIDRaw=str(job_id), JobID=str(job_id), State=state, JobName=name)
    return delimiter(BOUNDARY).join(values[field] for field in SACCT_FIELDS)


def _plain_row(job_id: int, state: str, name: str) -> str:
    """A row as a job name can write it: it cannot know the call's boundary."""
    return _row(job_id, state, name).replace(delimiter(BOUNDARY), "\x1f")


def test_a_name_with_a_newline_continues_the_name() -> None:
    """A line that does not start with a job id belongs to the name on the line before."""
    [record] = parse_sacct(_row(5, "COMPLETED", "two\nlines") + "\n", BOUNDARY)
    assert record.name == "two\nlines"
    assert record.state == "COMPLETED"


def test_a_name_forging_a_second_row_for_its_job_is_refused() -> None:
    """A name that prints a whole row with its own job's id cannot replace the real one."""
    forged = _row(5, "COMPLETED", "x\n" + _row(5, "CANCELLED", "y"))
    with pytest.raises(ParseError):
        parse_sacct(forged, BOUNDARY)


def test_a_name_cannot_forge_a_row_of_a_job_that_is_not_there() -> None:
    """A name holding a newline and a whole row of another job id (with the plain \\x1f it
    can write, not the call's random boundary) stays part of the name: no job 6 appears."""
    forged = _row(5, "COMPLETED", "x\n" + _plain_row(6, "FAILED", "planted"))
    [record] = parse_sacct(forged + "\n", BOUNDARY)
    assert record.job_id == 5 and "planted" in record.name


def test_the_command_reads_the_completion_log_only_when_asked() -> None:
    """`--completion` (sacct -c) is added for clusters without slurmdbd."""
    assert "--completion" not in sacct_command([1], boundary=BOUNDARY).argv
    assert "--completion" in sacct_command([1, 2], boundary=BOUNDARY, completion_log=True).argv
    assert "--jobs=1,2" in sacct_command([1, 2], boundary=BOUNDARY).argv


def _result(case: str) -> CommandResult:
    """A captured sacct case as the transport hands it back."""
    argv = json.loads((GOLDEN / f"{case}.argv.json").read_text())["argv"]
    return CommandResult(
        argv=tuple(argv),
        stdout=(GOLDEN / f"{case}.stdout").read_text(),
        stderr=(GOLDEN / f"{case}.stderr").read_text(),
        exit_code=int((GOLDEN / f"{case}.exit").read_text()),
    )


def test_without_slurmdbd_the_final_state_comes_from_the_completion_log() -> None:
    """On a cluster without slurmdbd (LOCAL_CLUSTER_ACCOUNTING=0) sacct fails with "accounting
    storage is disabled" and the lookup takes the job's end from sacct -c."""
    [job] = [r for r in _parse("completion-log") if r.name == "exit3"]
    ids = [str(job.job_id)]
    unknown = CommandResult(("scontrol",), "", "slurm_load_jobs error: Invalid job id", 1)
    results = [unknown, _result("accounting-disabled"), _result("completion-log")]
    found = parse_lookup(ids, results, sacct_boundary(results[-1].argv))
    final = found[ids[0]]
    assert final.source is RecordSource.COMPLETION_LOG
    assert final.record is not None and final.record.state == "FAILED"


def _lookup(accounted_state: str, end: str) -> FinalRecord:
    """The lookup of a job scontrol still shows (a captured `scontrol show job` of a failed
    job) while slurmdbd has it `accounted_state`, ended at `end` (empty: not yet)."""
    details = (GOLDEN.parent / "job-details" / "failed.stdout").read_text()
    [shown] = parse_job_details(details)
    job_id = str(shown.job_id)
    values = {field: "" for field in SACCT_FIELDS}
    values.update(JobIDRaw=job_id, JobID=job_id, State=accounted_state, End=end, JobName="x")
    row = delimiter(BOUNDARY).join(values[field] for field in SACCT_FIELDS) + "\n"
    results = [
        CommandResult(("scontrol",), details, "", 0),
        CommandResult(("sacct",), row, "", 0),
        CommandResult(("sacct", "--completion"), "", "", 0),
    ]
    return parse_lookup([job_id], results, BOUNDARY)[job_id]


def test_an_ended_accounting_record_is_the_final_one() -> None:
    """When slurmdbd has seen the job end, its record wins over scontrol's (issue 14)."""
    final = _lookup("OUT_OF_MEMORY", "1796185522")
    assert final.source is RecordSource.ACCOUNTING
    assert final.record is not None and final.record.state == "OUT_OF_MEMORY"


def test_accounting_that_has_not_seen_the_end_yields_to_scontrol() -> None:
    """slurmdbd hears of an end after slurmctld: a record still RUNNING there does not win."""
    final = _lookup("RUNNING", "Unknown")
    assert final.source is RecordSource.SCONTROL
    assert final.record is not None and final.record.state == "FAILED"
