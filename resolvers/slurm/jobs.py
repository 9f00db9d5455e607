"""Jobs from `squeue`: the command and its parser, sharing one field list. Pure.

Fields are separated by \\x1f, times are epoch seconds (SLURM_TIME_FORMAT=%s) and sizes are not
abbreviated (--noconvert). Slurm prints job names, comments and paths verbatim, control characters
included, so a user could forge rows with a name holding "\\n" or "\\x1f". Rows therefore end with
a boundary chosen at random per call, and the free-text fields, which come last, are separated by
that boundary too: no user text can guess it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.values import epoch_or_none, int_or_none, minutes_or_none, text_or_none
from transport.base import Command

# Fields Slurm validates itself (names, numbers, states): separated by a plain \x1f.
STRUCTURED_FIELDS = (
    "JobArrayID",
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "UserName",
    "Account",
    "State",
    "Reason",
    "Partition",
    "NodeList",
    "SubmitTime",
    "StartTime",
    "EndTime",
    "TimeLimit",
    "NumNodes",
    "NumCPUs",
    "exit_code",
    "PriorityLong",
    "QOS",
    "Dependency",
)
# Fields a user writes freely: separated by the random boundary.
FREE_TEXT_FIELDS = ("Name", "Comment", "WorkDir", "STDOUT", "STDERR", "Command")
SQUEUE_FIELDS = STRUCTURED_FIELDS + FREE_TEXT_FIELDS

FIELD_SEPARATOR = "\x1f"
RECORD_SEPARATOR = "\x1e"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of squeue: a job, an array task, or the pending remainder of an array."""

    display_id: str  # Slurm's own id: 42, 42_3, 42_[4-9%2], 42+1
    job_id: int
    array_job_id: int | None
    array_task_id: str | None
    name: str
    user: str
    account: str | None
    state: str
    reason: str | None
    partition: str | None
    node_list: str | None
    submit_time: int | None
    start_time: int | None
    end_time: int | None
    time_limit_minutes: int | None
    num_nodes: int
    num_cpus: int
    exit_code: int | None
    signal: int | None
    priority: int | None
    qos: str | None
    dependency: str | None
    comment: str | None
    work_dir: str | None
    stdout_path: str | None
    stderr_path: str | None
    command: str | None


def new_boundary() -> str:
    """A fresh boundary for one squeue call."""
    return secrets.token_hex(6)


def squeue_command(boundary: str, job_ids: Sequence[str] = ()) -> Command:
    """squeue for every job Slurm still holds, in every state and every partition."""
    if not boundary.isalnum():
        raise ValueError("the boundary must be alphanumeric")
    separator = FIELD_SEPARATOR + boundary
    spec = [f"{field}:0{FIELD_SEPARATOR}" for field in STRUCTURED_FIELDS[:-1]]
    spec.append(f"{STRUCTURED_FIELDS[-1]}:0{separator}")
    spec.extend(f"{field}:0{separator}" for field in FREE_TEXT_FIELDS[:-1])
    spec.append(f"{FREE_TEXT_FIELDS[-1]}:0{RECORD_SEPARATOR}{boundary}")
    argv = ["squeue", "--all", "--states=all", "--noconvert", "--noheader"]
    argv += ["--Format=" + ",".join(spec)]
    if job_ids:
        argv += ["--jobs=" + ",".join(job_ids)]
    return Command(tuple(argv), env={"SLURM_TIME_FORMAT": "%s"})


def parse_squeue(text: str, boundary: str) -> list[JobRecord]:
    """Every job in squeue output made by `squeue_command(boundary)`; [] for empty output."""
    end_of_record = RECORD_SEPARATOR + boundary
    chunks = text.split(end_of_record)
    tail = chunks.pop().strip("\r\n")
    if tail:
        raise ParseError("squeue", tail, "output ends in the middle of a row")
    free_separator = FIELD_SEPARATOR + boundary
    return [_parse_row(chunk.lstrip("\r\n"), free_separator) for chunk in chunks]


def _parse_row(row: str, free_separator: str) -> JobRecord:
    structured, *free = row.split(free_separator)
    values = structured.split(FIELD_SEPARATOR)
    if len(values) != len(STRUCTURED_FIELDS) or len(free) != len(FREE_TEXT_FIELDS):
        raise ParseError("squeue", row, "wrong number of fields")
    (
        display_id,
        job_id,
        array_job_id,
        array_task_id,
        user,
        account,
        state,
        reason,
        partition,
        node_list,
        submit_time,
        start_time,
        end_time,
        time_limit,
        num_nodes,
        num_cpus,
        wait_status,
        priority,
        qos,
        dependency,
    ) = values
    name, comment, work_dir, stdout_path, stderr_path, command = free
    if not job_id.isdigit():
        raise ParseError("squeue", row, "job id is not a number")
    task = text_or_none(array_task_id)
    status = int_or_none(wait_status)
    return JobRecord(
        display_id=display_id,
        job_id=int(job_id),
        array_job_id=int(array_job_id) if task is not None else None,
        array_task_id=task,
        name=name,
        user=user,
        account=text_or_none(account),
        state=state.split()[0] if state else "UNKNOWN",
        reason=None if reason == "None" else text_or_none(reason),
        partition=text_or_none(partition),
        node_list=text_or_none(node_list),
        submit_time=epoch_or_none(submit_time),
        start_time=epoch_or_none(start_time),
        end_time=epoch_or_none(end_time),
        time_limit_minutes=minutes_or_none(time_limit),
        num_nodes=int_or_none(num_nodes) or 0,
        num_cpus=int_or_none(num_cpus) or 0,
        # squeue prints the raw wait status: exit code in the high byte, signal in the low bits.
        exit_code=status >> 8 if status is not None else None,
        signal=status & 0x7F if status is not None else None,
        priority=int_or_none(priority),
        qos=text_or_none(qos),
        dependency=text_or_none(dependency),
        comment=text_or_none(comment),
        work_dir=text_or_none(work_dir),
        stdout_path=text_or_none(stdout_path),
        stderr_path=text_or_none(stderr_path),
        command=text_or_none(command),
    )
