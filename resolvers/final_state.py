"""How jobs that left squeue ended: scontrol while Slurm keeps them, then accounting.

squeue stops listing a job `MinJobAge` seconds after it ends, so a job that runs and ends between
two polls can be gone before a poll sees its last state. For those jobs one batch (one round trip)
asks every source at once: `scontrol show job` per job, `sacct` (slurmdbd) and `sacct -c` (the
job-completion log). slurmdbd's record of an ended job wins; then scontrol's, then accounting's
of a job it has not seen end yet, then the completion log's. A source that fails
(accounting disabled, the log unreadable, the job unknown) simply does not know; only a controller
that cannot be reached fails the lookup, since then nothing can be concluded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from resolvers.events import FinalRecord, RecordSource
from resolvers.slurm.errors import CommandFailed, ParseError, SlurmError, SlurmErrorKind, check
from resolvers.slurm.job_details import JobDetails, parse_job_details, show_job_command
from resolvers.slurm.jobs import FIELD_SEPARATOR, JobRecord, new_boundary
from resolvers.slurm.sacct import AccountingRecord, parse_sacct, sacct_command
from transport.base import Command, CommandResult, Transport

# Beyond this many jobs in one lookup, only accounting is asked (one command for all of them).
MAX_SCONTROL_PER_BATCH = 32

T = TypeVar("T")
_UNREACHABLE = (
    SlurmErrorKind.CONTROLLER_UNREACHABLE,
    SlurmErrorKind.ACCOUNTING_UNREACHABLE,
    SlurmErrorKind.AUTHENTICATION,
)


def lookup_batch(job_ids: Sequence[str], boundary: str) -> list[Command]:
    """The commands that find how `job_ids` (validated display ids) ended, in the order
    `parse_lookup` reads them (with the same `boundary`, fresh per batch: new_boundary())."""
    commands = [show_job_command(job_id) for job_id in job_ids[:MAX_SCONTROL_PER_BATCH]]
    commands.append(sacct_command(job_ids, boundary=boundary))
    commands.append(sacct_command(job_ids, boundary=boundary, completion_log=True))
    return commands


def parse_lookup(
    job_ids: Sequence[str], results: Sequence[CommandResult], boundary: str
) -> dict[str, FinalRecord]:
    """A FinalRecord for every job id asked for, from the results of `lookup_batch(job_ids)`."""
    *shown, accounted, logged = results
    # slurmdbd's record of an ended job is the final one (issue 14): it comes first. slurmdbd
    # hears of an end a moment after slurmctld, so a record it still has as running yields to
    # scontrol's.
    in_accounting = _known(accounted, lambda text: parse_sacct(text, boundary))
    found = [
        FinalRecord(from_accounting(r), RecordSource.ACCOUNTING)
        for r in in_accounting
        if r.end_time is not None
    ]
    for result in shown:
        found.extend(
            FinalRecord(from_details(details), RecordSource.SCONTROL)
            for details in _known(result, parse_job_details)
        )
    found.extend(FinalRecord(from_accounting(r), RecordSource.ACCOUNTING) for r in in_accounting)
    found.extend(
        FinalRecord(from_accounting(r), RecordSource.COMPLETION_LOG)
        for r in _known(logged, lambda text: parse_sacct(text, boundary))
    )
    answers: dict[str, FinalRecord] = {}
    for final in found:  # in order of precedence: the first answer for an id stands
        assert final.record is not None
        for key in (str(final.record.job_id), final.record.display_id):
            answers.setdefault(key, final)
    return {job_id: answers.get(job_id, FinalRecord(None, RecordSource.NONE)) for job_id in job_ids}


async def look_up(transport: Transport, job_ids: Sequence[str]) -> dict[str, FinalRecord]:
    """How `job_ids` ended, in one round trip."""
    if not job_ids:
        return {}
    boundary = new_boundary()
    return parse_lookup(job_ids, await transport.run(lookup_batch(job_ids, boundary)), boundary)


def _known(result: CommandResult, parse: Callable[[str], list[T]]) -> list[T]:
    try:
        return parse(check(result).stdout)
    except SlurmError as exc:
        if exc.kind in _UNREACHABLE:
            raise
        return []
    except (CommandFailed, ParseError):  # a command that failed otherwise, unreadable output
        return []


def _record(
    *,
    display_id: str,
    job_id: int,
    user: str,
    state: str,
    name: str,
    fields: dict[str, str | int | None],
    free: Sequence[str | None],
) -> JobRecord:
    """A JobRecord in the text form squeue prints, so the Job type reads it like any other."""

    def raw(value: str | int | None, absent: str = "") -> str:
        return absent if value is None else str(value)

    separator = FIELD_SEPARATOR + new_boundary()
    return JobRecord(
        display_id=display_id,
        job_id=job_id,
        raw_array_job_id=raw(fields.get("array_job_id")),
        raw_array_task_id=raw(fields.get("array_task_id"), "N/A"),
        user=user,
        raw_account=raw(fields.get("account")),
        state=state,
        raw_reason=raw(fields.get("reason"), "None"),
        raw_partition=raw(fields.get("partition")),
        raw_node_list=raw(fields.get("node_list")),
        raw_submit_time=raw(fields.get("submit_time"), "0"),
        raw_start_time=raw(fields.get("start_time"), "0"),
        raw_end_time=raw(fields.get("end_time"), "0"),
        raw_time_limit=raw(fields.get("time_limit"), "UNLIMITED"),
        raw_num_nodes=raw(fields.get("num_nodes"), "0"),
        raw_num_cpus=raw(fields.get("num_cpus"), "0"),
        raw_wait_status=raw(fields.get("wait_status")),
        raw_priority="",
        raw_qos="",
        raw_dependency="",
        raw_free_text=separator.join(value or "" for value in (name, *free)),
        free_separator=separator,
    )


def _exit(code: int | None, signal: int | None) -> str | None:
    return None if code is None else f"{code}:{signal or 0}"


def from_details(job: JobDetails) -> JobRecord:
    task = job.array_task_id
    return _record(
        display_id=f"{job.array_job_id}_{task}" if task and job.array_job_id else str(job.job_id),
        job_id=job.job_id,
        user=job.user,
        state=job.state,
        name=job.name,
        fields={
            "array_job_id": job.array_job_id,
            "array_task_id": task,
            "reason": job.reason,
            "partition": job.partition,
            "node_list": job.node_list,
            "submit_time": job.submit_time,
            "start_time": job.start_time,
            "end_time": job.end_time,
            "time_limit": job.time_limit_minutes,
            "num_nodes": job.num_nodes,
            "num_cpus": job.num_cpus,
            "wait_status": _exit(job.exit_code, job.signal),
        },
        free=(job.comment, job.work_dir, job.stdout_path, job.stderr_path, job.command),
    )


def from_accounting(job: AccountingRecord) -> JobRecord:
    return _record(
        display_id=job.display_id,
        job_id=job.job_id,
        user=job.user,
        # The completion log may have lost the state (see resolvers/slurm/sacct.py).
        state=job.state or "UNKNOWN",
        name=job.name,
        fields={
            "account": job.account,
            "partition": job.partition,
            "node_list": job.node_list,
            "submit_time": job.submit_time,
            "start_time": job.start_time,
            "end_time": job.end_time,
            "time_limit": job.time_limit_minutes,
            "num_nodes": job.num_nodes,
            "num_cpus": job.num_cpus,
            "wait_status": _exit(job.exit_code, job.signal),
        },
        free=(None, job.work_dir, None, None, None),
    )
