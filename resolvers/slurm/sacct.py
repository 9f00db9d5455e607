"""Finished jobs from accounting, `sacct` or `sacct -c`: the command and its parser. Pure.

`sacct` reads slurmdbd; `sacct -c` reads the job-completion log (jobcomp/filetxt) a cluster
without slurmdbd may keep instead. Both print the same columns, asked for here with `-X` (one row
per job, not per step), \\x1f between fields and times as epoch seconds.

The job name comes last because users write it freely: a name holding \\x1f stays inside the
last field. A name holding a newline could start a line that looks like a row: so the delimiter
is \\x1f and a boundary chosen at random per call (as squeue's, resolvers/slurm/jobs.py), which no
name can guess; a line that does not start with a numeric id and that delimiter continues the
name before it, and a job id seen twice still makes the whole output untrusted. What the
completion log itself loses (filetxt splits a name at its first space, and then prints no
state) cannot be recovered here: that state reads as UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.values import (
    epoch_or_none,
    int_or_none,
    is_decimal,
    minutes_or_none,
    text_or_none,
)
from transport.base import Command

SACCT_FIELDS = (
    "JobIDRaw",
    "JobID",
    "State",
    "ExitCode",
    "User",
    "Account",
    "Partition",
    "NodeList",
    "NCPUS",
    "NNodes",
    "Submit",
    "Start",
    "End",
    "Timelimit",
    "WorkDir",
    "JobName",
)
SEPARATOR = "\x1f"


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """One job as accounting remembers it after it ended."""

    job_id: int
    display_id: str
    state: str  # Slurm's base state: `CANCELLED by 0` reads as CANCELLED; "" if not recorded
    exit_code: int | None
    signal: int | None
    user: str
    account: str | None
    partition: str | None
    node_list: str | None
    num_cpus: int
    num_nodes: int
    submit_time: int | None
    start_time: int | None
    end_time: int | None
    time_limit_minutes: int | None
    work_dir: str | None
    name: str


def sacct_command(
    job_ids: Sequence[int | str], *, boundary: str, completion_log: bool = False
) -> Command:
    """sacct for these jobs; `completion_log` reads the job-completion log (-c); `boundary`
    (new_boundary(), fresh per call) joins the field delimiter, and parse_sacct takes it back.

    String ids (`42_3`) must have been validated (resolvers/ids.py) by the caller.
    """
    if not job_ids:
        raise ValueError("sacct needs at least one job id")
    argv = ["sacct"]
    if completion_log:
        argv.append("--completion")
    argv += ["--allocations", "--parsable2", "--noheader", f"--delimiter={delimiter(boundary)}"]
    argv += ["--jobs=" + ",".join(str(job_id) for job_id in job_ids)]
    argv += ["--format=" + ",".join(SACCT_FIELDS)]
    return Command(tuple(argv), env={"SLURM_TIME_FORMAT": "%s"})


def delimiter(boundary: str) -> str:
    """sacct's field delimiter for one call: \\x1f, then the call's random boundary."""
    if boundary and not boundary.isalnum():
        raise ValueError("the boundary must be alphanumeric")
    return SEPARATOR + boundary


def rows(text: str, separator: str, starts_row: Callable[[str], bool]) -> list[str]:
    """Lines joined back into rows: a line whose text before the first `separator` is not an id
    (`starts_row`), or that holds no separator, continues the name of the row before it."""
    found: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        head = line.partition(separator)[0]
        if separator in line and starts_row(head):
            found.append(line)
        elif found:
            found[-1] += "\n" + line
        elif line:
            raise ParseError("sacct", line, "output does not start with a job id")
    if found:
        found[-1] = found[-1].rstrip("\n")  # the final newline, not part of the last name
    return found


def job_record(
    value: Mapping[str, str], *, cpus: str = "NCPUS", time_limit: str = "Timelimit"
) -> AccountingRecord:
    """The job row of either command, by column name. `cpus` and `time_limit` name the columns
    the command asked for: the history asks for AllocCPUS and TimelimitRaw, which read the same
    for a job row (both limit forms parse as minutes)."""
    code, _, signal = value["ExitCode"].partition(":")
    return AccountingRecord(
        job_id=int(value["JobIDRaw"]),
        display_id=value["JobID"],
        state=value["State"].split(" ")[0],
        exit_code=int_or_none(code),
        signal=int_or_none(signal),
        # slurmdbd prints the user name; the completion log prints `name(uid)`.
        user=value["User"].split("(")[0],
        account=text_or_none(value["Account"]),
        partition=text_or_none(value["Partition"]),
        node_list=text_or_none(value["NodeList"]),
        num_cpus=int_or_none(value[cpus]) or 0,
        num_nodes=int_or_none(value["NNodes"]) or 0,
        submit_time=epoch_or_none(value["Submit"]),
        start_time=epoch_or_none(value["Start"]),
        end_time=epoch_or_none(value["End"]),
        # The completion log prints whole minutes (`60`), slurmdbd `H:M:S`: both parse.
        time_limit_minutes=minutes_or_none(value[time_limit]),
        work_dir=text_or_none(value["WorkDir"]),
        name=value["JobName"],
    )


def parse_sacct(text: str, boundary: str) -> list[AccountingRecord]:
    """Every job in output made by `sacct_command` with this boundary; [] for empty output."""
    records: list[AccountingRecord] = []
    seen: set[int] = set()
    separator = delimiter(boundary)
    for row in rows(text, separator, is_decimal):
        fields = row.split(separator, len(SACCT_FIELDS) - 1)
        if len(fields) != len(SACCT_FIELDS):
            raise ParseError("sacct", row, "wrong number of fields")
        record = job_record(dict(zip(SACCT_FIELDS, fields, strict=True)))
        if record.job_id in seen:
            raise ParseError("sacct", row, "a job appears twice (forged by a job name?)")
        seen.add(record.job_id)
        records.append(record)
    return records
