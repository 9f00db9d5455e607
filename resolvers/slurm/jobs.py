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
from typing import NamedTuple

from resolvers.slurm.errors import ParseError
from resolvers.slurm.filename import recover_pattern
from resolvers.slurm.values import (
    epoch_or_none,
    int_or_none,
    is_decimal,
    minutes_or_none,
    text_or_none,
)
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
_USER = STRUCTURED_FIELDS.index("UserName")

FIELD_SEPARATOR = "\x1f"
RECORD_SEPARATOR = "\x1e"


class JobRecord(NamedTuple):
    """One job's fields (a job, an array task, or the pending remainder of an array).

    Made from a JobRow when a job is shown or filtered. Fields hold the text Slurm printed; the
    properties convert on access, so a response pays only for the fields it selects. A frozen
    dataclass converting all 26 fields up front cost 27 us a job.
    """

    display_id: str  # Slurm's own id: 42, 42_3, 42_[4-9%2], 42+1
    job_id: int
    raw_array_job_id: str
    raw_array_task_id: str
    user: str
    raw_account: str
    state: str
    raw_reason: str
    raw_partition: str
    raw_node_list: str
    raw_submit_time: str
    raw_start_time: str
    raw_end_time: str
    raw_time_limit: str
    raw_num_nodes: str
    raw_num_cpus: str
    raw_wait_status: str
    raw_priority: str
    raw_qos: str
    raw_dependency: str
    raw_free_text: str  # Name, Comment, WorkDir, STDOUT, STDERR, Command, split on access
    free_separator: str

    def _free(self, index: int) -> str:
        return self.raw_free_text.split(self.free_separator)[index]

    @property
    def name(self) -> str:
        return self._free(0)

    @property
    def array_task_id(self) -> str | None:
        return text_or_none(self.raw_array_task_id)

    @property
    def array_job_id(self) -> int | None:
        return int_or_none(self.raw_array_job_id) if self.array_task_id is not None else None

    @property
    def account(self) -> str | None:
        return text_or_none(self.raw_account)

    @property
    def reason(self) -> str | None:
        return text_or_none(self.raw_reason)

    @property
    def partition(self) -> str | None:
        return text_or_none(self.raw_partition)

    @property
    def node_list(self) -> str | None:
        return text_or_none(self.raw_node_list)

    @property
    def submit_time(self) -> int | None:
        return epoch_or_none(self.raw_submit_time)

    @property
    def start_time(self) -> int | None:
        return epoch_or_none(self.raw_start_time)

    @property
    def end_time(self) -> int | None:
        return epoch_or_none(self.raw_end_time)

    @property
    def time_limit_minutes(self) -> int | None:
        return minutes_or_none(self.raw_time_limit)

    @property
    def num_nodes(self) -> int:
        return int_or_none(self.raw_num_nodes) or 0

    @property
    def num_cpus(self) -> int:
        return int_or_none(self.raw_num_cpus) or 0

    @property
    def exit_code(self) -> int | None:
        return _exit_status(self.raw_wait_status)[0]

    @property
    def signal(self) -> int | None:
        """The signal that ended the job, 0 if none."""
        return _exit_status(self.raw_wait_status)[1]

    @property
    def priority(self) -> int | None:
        return int_or_none(self.raw_priority)

    @property
    def qos(self) -> str | None:
        return text_or_none(self.raw_qos)

    @property
    def dependency(self) -> str | None:
        return text_or_none(self.raw_dependency)

    @property
    def comment(self) -> str | None:
        return text_or_none(self._free(1))

    @property
    def work_dir(self) -> str | None:
        return text_or_none(self._free(2))

    @property
    def stdout_pattern(self) -> str | None:
        """The --output pattern (the default one if none was given); None if no batch script
        writes one (22.05 prints N/A as such a job's STDERR, 24.11 (null) for both)."""
        if self._free(4) == "N/A":
            return None
        return self._pattern(self._free(3))

    @property
    def stderr_pattern(self) -> str | None:
        # Without --error, a batch job's stderr goes where its stdout goes. Slurm 22.05 prints
        # that pattern here; 24.11 prints (null).
        printed = self._free(4)
        if printed == "N/A":
            return None
        return self._pattern(printed) or self.stdout_pattern

    def _pattern(self, printed: str) -> str | None:
        text = text_or_none(printed)
        if text is None:
            return None
        array_task = self.array_task_id is not None
        return recover_pattern(
            text, work_dir=self.work_dir, job_id=self.job_id, array_task=array_task
        )

    @property
    def command(self) -> str | None:
        return text_or_none(self._free(5))


def _exit_status(raw: str) -> tuple[int | None, int | None]:
    """(exit code, signal) from squeue's exit_code column.

    Slurm 22.05 prints the raw wait status (exit code in the high byte, signal in the low seven
    bits); 24.11 prints `code:signal`, as scontrol does. A job a signal ended has exit code 0,
    as scontrol and sacct say: the high byte of such a status is no exit code (WEXITSTATUS is
    defined only for a process that exited).
    """
    code, colon, signal = raw.partition(":")
    if colon:
        return int_or_none(code), int_or_none(signal)
    status = int_or_none(raw)
    if status is None:
        return None, None
    signal_number = status & 0x7F
    return (0, signal_number) if signal_number else (status >> 8, 0)


def new_boundary() -> str:
    """A fresh boundary for one squeue call."""
    return secrets.token_hex(6)


def _format_option(boundary: str) -> str:
    separator = FIELD_SEPARATOR + boundary
    spec = [f"{field}:0{FIELD_SEPARATOR}" for field in STRUCTURED_FIELDS[:-1]]
    spec.append(f"{STRUCTURED_FIELDS[-1]}:0{separator}")
    spec.extend(f"{field}:0{separator}" for field in FREE_TEXT_FIELDS[:-1])
    spec.append(f"{FREE_TEXT_FIELDS[-1]}:0{RECORD_SEPARATOR}{boundary}")
    return "--Format=" + ",".join(spec)


# squeue's --Format with a stand-in for the boundary, built once: every lookup asks for one
# (~30 fields); a NUL is in no field name and in no boundary (alphanumeric), so replacing it
# gives exactly what _format_option(boundary) gives (tests/resolvers/test_pure.py).
_BOUNDARY = "\x00"
_FORMAT = _format_option(_BOUNDARY)


def squeue_command(
    boundary: str,
    job_ids: Sequence[str] = (),
    *,
    users: Sequence[str] = (),
    states: Sequence[str] = (),
    partitions: Sequence[str] = (),
    nodes: Sequence[str] = (),
) -> Command:
    """squeue for every job Slurm still holds, in every state and every partition, or only
    those matching every list given (values are checked by the caller, resolvers/scope.py)."""
    if not boundary.isalnum():
        raise ValueError("the boundary must be alphanumeric")
    argv = ["squeue", "--all", "--states=" + (",".join(states) or "all"), "--noconvert"]
    argv += ["--noheader", _FORMAT.replace(_BOUNDARY, boundary)]
    for option, values in (
        ("--jobs", job_ids),
        ("--user", users),
        ("--partition", partitions),
        ("--nodelist", nodes),
    ):
        if values:
            argv.append(f"{option}={','.join(values)}")
    return Command(tuple(argv), env={"SLURM_TIME_FORMAT": "%s"})


class JobRow(NamedTuple):
    """One squeue row as parsed: checked, but split into its fields only when asked (`fields`).

    A snapshot of 100,000 jobs is mostly sorted, filtered and cut into pages; only the rows a
    response shows, or a filter reads, are split. That keeps parsing near 2 us a row.
    """

    job_id: int
    display_id: str  # Slurm's own id: 42, 42_3, 42_[4-9%2], 42+1
    structured: str  # the STRUCTURED_FIELDS, \x1f-separated, as Slurm printed them
    free_text: str  # the FREE_TEXT_FIELDS, separated by free_separator
    free_separator: str

    @property
    def user(self) -> str:
        """The job's user, without splitting the rest of the row."""
        return self.structured.split(FIELD_SEPARATOR, _USER + 1)[_USER]

    def fields(self) -> JobRecord:
        # The split strings are replaced in place by typed values below; list[str] is not a
        # list[object] to mypy (lists are invariant), and copying the row to please it costs time
        # on every job of every listing.
        values: list[object] = self.structured.split(FIELD_SEPARATOR)  # type: ignore[assignment]
        values[1] = self.job_id
        values.append(self.free_text)
        values.append(self.free_separator)
        record: JobRecord = tuple.__new__(JobRecord, values)
        return record


def parse_squeue(text: str, boundary: str) -> list[JobRow]:
    """Every job in squeue output made by `squeue_command(boundary)`; [] for empty output."""
    end_of_row = RECORD_SEPARATOR + boundary + "\n"
    if "\r" in text:
        # Only row ends may have become CRLF: a "\r\n" inside a job's name or comment is data.
        text = text.replace(end_of_row[:-1] + "\r\n", end_of_row)
    if text.endswith(end_of_row[:-1]):
        text += "\n"  # output cut before its final newline
    rows = text.split(end_of_row)
    tail = rows.pop().strip("\n")
    if tail:
        raise ParseError("squeue", tail, "output ends in the middle of a row")
    free_separator = FIELD_SEPARATOR + boundary
    structured_separators = len(STRUCTURED_FIELDS) - 1
    free_separators = len(FREE_TEXT_FIELDS) - 1
    new = tuple.__new__
    parsed: list[JobRow] = []
    for row in rows:
        structured, _, free = row.partition(free_separator)
        if (
            structured.count(FIELD_SEPARATOR) != structured_separators
            or free.count(free_separator) != free_separators
        ):
            raise ParseError("squeue", row, "wrong number of fields")
        display_id, _, rest = structured.partition(FIELD_SEPARATOR)
        job_id = rest[: rest.find(FIELD_SEPARATOR)]
        if not is_decimal(job_id):
            raise ParseError("squeue", row, "job id is not a number")
        parsed.append(new(JobRow, (int(job_id), display_id, structured, free, free_separator)))
    return parsed
