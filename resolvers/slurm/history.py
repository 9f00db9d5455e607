"""Job history from slurmdbd, `sacct` with jobs and their steps: the command and its parser. Pure.

One `sacct` call per page: every filter is an option of that call (`--user`, `--accounts`,
`--partition`, `--qos`, `--state`, `--name`, `--jobs`, `--starttime`/`--endtime`), never a
filter applied after fetching everything. Each value is checked here, against Slurm's own
grammar for it, before it may join an argv: nothing a client sends can start with `-` (an
option), carry a comma (a second value) or a control byte, or run to kilobytes.

Rows: one per job, then one per step (`42.batch`, `42.0`, `42.extern`), `\\x1f` and a boundary
chosen at random per call between fields, `--noconvert` so MaxRSS is bytes, the job name last
(users write it freely; see sacct.py for why a newline in a name cannot forge a row).

`--duplicates`: a requeued job has one record per run, each with its steps, and each new run's
Submit is the time of the requeue. The job reads as sacct without -D shows it (the record
submitted last among those in the window), but its earliest Submit is kept: the time its id was
given, or earlier, which is what a history cursor needs (resolvers/history.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from resolvers.ids import BadUserInput
from resolvers.slurm.errors import ParseError
from resolvers.slurm.history_listing import LISTING_FIELDS
from resolvers.slurm.sacct import AccountingRecord, delimiter, job_record, rows
from resolvers.slurm.values import epoch_or_none, int_or_none, text_or_none
from transport.base import Command

HISTORY_FIELDS = (
    "JobIDRaw",
    "JobID",
    "State",
    "ExitCode",
    "User",
    "Account",
    "Partition",
    "QOS",
    "NodeList",
    "AllocCPUS",
    "NNodes",
    "Submit",
    "Eligible",
    "Start",
    "End",
    "ElapsedRaw",
    "TotalCPU",
    "MaxRSS",
    "ReqMem",
    "TimelimitRaw",
    "WorkDir",
    "JobName",
)
# sacct asks slurmdbd for its whole QOS list (about 85 ms on the local cluster) to print a QOS
# name, and for its TRES list to print AllocTRES or ReqTRES: a page that does not show the QOS
# leaves the column out (`qos=False`), and memory is read from ReqMem, which needs no list.
QOS_FIELD = "QOS"
MAX_IDS = 1000  # in id_list: an argv of about 11 KB
MAX_VALUES = 100  # per filter list: more is not a query a person types
# Slurm names (users, accounts, partitions, QOS): no option dash first, no comma, no space.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}\Z", re.ASCII)
_JOB_ID = re.compile(r"^\d{1,10}(?:_\d{1,10})?\Z", re.ASCII)
# Job names are free text to Slurm, but a comma would split sacct's --name list.
_JOB_NAME = re.compile(r"^[^,\x00-\x1f\x7f]{1,256}\Z")
STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PENDING",
        "PREEMPTED",
        "RUNNING",
        "REQUEUED",
        "RESIZING",
        "REVOKED",
        "SUSPENDED",
        "TIMEOUT",
    }
)
_STEP_ROW = re.compile(r"^\d{1,10}(?:\.[A-Za-z0-9_+]{1,32})?\Z", re.ASCII)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What one page of history asks sacct for; times are epoch seconds."""

    start: int  # --starttime: jobs that were eligible, running or ended after this
    end: int  # --endtime
    users: tuple[str, ...] = ()  # () means every user the caller's Slurm lets them see
    accounts: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    qos: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    # Job ids the server chose (a page's next ids, or its jobs for their steps), not a filter
    # a client sent: as many as MAX_IDS, and never with `job_ids`. A pair (A, T) is an array's
    # own record, asked as `A_T`: plain `A` would bring every task of the array too.
    id_list: tuple[int | tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a finished job as accounting measured it."""

    step_id: str  # batch, extern, 0, 1…
    display_id: str  # 42.batch, 7_3.0
    name: str
    state: str
    exit_code: int | None
    signal: int | None
    elapsed_seconds: int | None
    cpu_seconds: float | None  # user + system CPU time of the step's processes
    max_rss_bytes: int | None
    node_list: str | None


@dataclass(frozen=True, slots=True)
class HistoryRecord(AccountingRecord):
    """One job from slurmdbd, with what accounting measured and its steps."""

    qos: str | None  # None when not asked for (history_fields(qos=False))
    elapsed_seconds: int | None
    cpu_seconds: float | None
    # requested (ReqMem; AllocTRES mem= in captures made before ReqMem was asked for): what
    # efficiency compares with, as seff does
    memory_bytes: int | None
    steps: tuple[StepRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Efficiency:
    """What `seff` prints for a finished job."""

    elapsed_seconds: int
    cpu_seconds: float
    cpu_efficiency_percent: float | None  # None when no CPU time was allocated (0 s elapsed)
    max_rss_bytes: int | None
    memory_efficiency_percent: float | None


def _checked(kind: str, values: Sequence[str], pattern: re.Pattern[str]) -> tuple[str, ...]:
    if len(values) > MAX_VALUES:
        raise BadUserInput(f"at most {MAX_VALUES} {kind} values")
    for value in values:
        if not pattern.match(value):
            raise BadUserInput(f"{value[:40]!r} is not a valid {kind}")
    return tuple(values)


def validate_query(query: HistoryQuery) -> HistoryQuery:
    """The query, if every value may reach sacct's argv; BadUserInput naming the first that
    may not."""
    _checked("user", query.users, _NAME)
    _checked("account", query.accounts, _NAME)
    _checked("partition", query.partitions, _NAME)
    _checked("QOS", query.qos, _NAME)
    _checked("job id", query.job_ids, _JOB_ID)
    _checked("job name", query.names, _JOB_NAME)
    for state in query.states:
        if state not in STATES:
            raise BadUserInput(f"{state[:40]!r} is not a job state sacct filters on")
    if len(query.states) > len(STATES):
        raise BadUserInput("too many states")
    if query.start < 0 or query.end < query.start:
        raise BadUserInput("the window ends before it starts")
    if query.id_list and (
        query.job_ids
        or len(query.id_list) > MAX_IDS
        or not all(_server_id(i) for i in query.id_list)
    ):
        raise ValueError("id_list: at most MAX_IDS job ids, and no job_ids beside it")
    return query


def _server_id(value: int | tuple[int, int]) -> bool:
    if isinstance(value, int):
        return 0 < value < 1 << 32
    array, task = value
    return 0 < array < 1 << 32 and 0 <= task < 1 << 32


def _asked(value: int | tuple[int, int]) -> str:
    return str(value) if isinstance(value, int) else f"{value[0]}_{value[1]}"


def history_fields(*, qos: bool = True) -> tuple[str, ...]:
    """The columns history_command asks for: all, or all but the QOS name."""
    return HISTORY_FIELDS if qos else tuple(f for f in HISTORY_FIELDS if f != QOS_FIELD)


def history_command(
    query: HistoryQuery,
    boundary: str,
    *,
    steps: bool = True,
    qos: bool = True,
    listing: bool = False,
    user: str | None = None,
) -> Command:
    """sacct for one page of history: every filter pushed down into this one call; `boundary`
    (new_boundary(), fresh per call) joins the field delimiter, and parse_history takes it back.
    Without `steps`, `--allocations`: slurmdbd then reads and sends no step at all, which is
    most of the cost of a long listing (a job row and a batch step row per job at least).
    Without `qos`, no QOS column (history_fields): parse the output with the same flag. A
    `listing` asks for LISTING_FIELDS of the jobs alone (parse_listing; its boundary may be "":
    resolvers/slurm/history_listing.py says why). `user`: who it runs as (Command.user)."""
    validate_query(query)
    argv = ["sacct", "--parsable2", "--noheader", "--noconvert", "--duplicates"]
    if listing or not steps:
        argv.append("--allocations")
    argv.append(f"--delimiter={delimiter(boundary)}")
    fields = LISTING_FIELDS if listing else history_fields(qos=qos)
    argv.append(f"--format={','.join(fields)}")
    argv.append(f"--starttime={_clock(query.start)}")
    argv.append(f"--endtime={_clock(query.end)}")
    argv.append("--user=" + ",".join(query.users) if query.users else "--allusers")
    for option, values in (
        ("--accounts", query.accounts),
        ("--partition", query.partitions),
        ("--qos", query.qos),
        ("--state", query.states),
        ("--name", query.names),
        ("--jobs", query.job_ids or tuple(_asked(i) for i in query.id_list)),
    ):
        if values:
            argv.append(f"{option}={','.join(values)}")
    # TZ=UTC: sacct reads the window's clock times in its own time zone, so both sides agree.
    return Command(tuple(argv), env={"SLURM_TIME_FORMAT": "%s", "TZ": "UTC"}, user=user)


_CLOCK = "%Y-%m-%dT%H:%M:%S"
# 10000-01-01: from here on datetime refuses the year, where time.strftime would print it.
_YEAR_10000 = 253_402_300_800


def _clock(epoch: int) -> str:
    """An epoch as sacct's `YYYY-MM-DDTHH:MM:SS` (sacct takes no epoch), in UTC."""
    if 0 <= epoch < _YEAR_10000:
        # The same text, about 4x faster than datetime's strftime (every job(id) asks twice).
        return time.strftime(_CLOCK, time.gmtime(epoch))
    return datetime.fromtimestamp(epoch, tz=UTC).strftime(_CLOCK)


def parse_size(value: str) -> int | None:
    """`62169088`, `100M`, `1.50G` (sacct's sizes, 1024-based) as bytes; None if absent."""
    value = value.strip()
    if not value:
        return None
    unit = value[-1].upper() if value[-1].isalpha() else ""
    number = value[: len(value) - len(unit)]
    if unit not in _UNITS:
        return None
    try:
        return int(float(number) * _UNITS[unit])
    except ValueError:
        return None


def parse_cpu_time(value: str) -> float | None:
    """sacct's TotalCPU: `MM:SS.mmm`, `HH:MM:SS`, `D-HH:MM:SS`; None if absent."""
    if not value:
        return None
    days, _, clock = value.rpartition("-")
    try:
        parts = [float(p) for p in clock.split(":")]
        seconds = int(days) * 86400.0 if days else 0.0
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3:
        return None
    clock_seconds = 0.0
    for part in parts:  # [h, ]m, s
        clock_seconds = clock_seconds * 60 + part
    return seconds + clock_seconds


def _memory(value: dict[str, str]) -> int | None:
    if "ReqMem" in value:
        return parse_size(value["ReqMem"])
    return _tres_memory(value.get("AllocTRES", ""))


def _tres_memory(tres: str) -> int | None:
    for item in tres.split(","):
        key, _, amount = item.partition("=")
        if key == "mem":
            return parse_size(amount)
    return None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One job of sacct's output, split but not yet read: what a page needs to choose its jobs
    (id, user, submit, eligible and end times) read; the rest read by `history_record`, for the
    page's jobs only."""

    job_id: int
    user: str  # in a five-column listing capture (JobIDRaw,UID,…), the UID
    submit_time: int | None
    end_time: int | None
    fields: tuple[str, ...]  # the job row, in `columns` order
    steps: tuple[tuple[str, ...], ...]  # its step rows, as printed
    # The earliest Submit of all its records in the output: a requeue's record is submitted
    # when it is requeued, so only the first run's tells when the job id was given.
    earliest_submit: int | None = None
    eligible_time: int | None = None  # None: never eligible (sacct: Unknown), or not asked for
    columns: tuple[str, ...] = HISTORY_FIELDS


def _is_row_head(head: str) -> bool:
    return _STEP_ROW.match(head) is not None


def _run(fields: tuple[str, ...], steps: list[tuple[str, ...]], columns: Columns) -> HistoryRow:
    """One record, its earliest Submit its own (a second record of the job may lower it)."""
    submit = epoch_or_none(fields[columns.submit])
    return HistoryRow(
        job_id=int(fields[columns.raw_id]),
        user=fields[columns.user],
        submit_time=submit,
        end_time=epoch_or_none(fields[columns.end]),
        fields=fields,
        steps=tuple(steps),
        earliest_submit=submit,
        eligible_time=None if columns.eligible is None else epoch_or_none(fields[columns.eligible]),
        columns=columns.names,
    )


@dataclass(frozen=True, slots=True)
class Columns:
    """Where the columns a page reads sit in the rows of one field list."""

    names: tuple[str, ...]
    raw_id: int
    user: int  # User; in a five-column listing capture, UID
    submit: int
    end: int
    eligible: int | None  # captures made before Eligible was asked for have none

    @classmethod
    def of(cls, names: Sequence[str]) -> Columns:
        index = {name: position for position, name in enumerate(names)}
        return cls(
            tuple(names),
            index["JobIDRaw"],
            index["User"] if "User" in index else index["UID"],
            index["Submit"],
            index["End"],
            index.get("Eligible"),
        )


def _later(kept: HistoryRow, run: HistoryRow) -> HistoryRow:
    """Of two records of one job, the one sacct without --duplicates shows (the last
    submitted), carrying the earliest Submit of both."""
    submits = [t for t in (kept.earliest_submit, kept.submit_time, run.submit_time) if t]
    shown = run if (run.submit_time or 0) >= (kept.submit_time or 0) else kept
    return replace(shown, earliest_submit=min(submits, default=None))


def history_rows(
    text: str,
    boundary: str,
    fields: Sequence[str] = HISTORY_FIELDS,
    *,
    eligible_before: int | None = None,
) -> list[HistoryRow]:
    """Every job in output made by `history_command` with this boundary and field list
    (history_fields), its steps attached, ordered by job id; each row only split (cheap), read
    by `history_record`. With `eligible_before`, only the records (runs) that were eligible
    before it: what sacct's window keeps without --jobs, which a --jobs query does not test
    (it keeps records submitted before the window's end, eligible or not)."""
    separator = delimiter(boundary)
    columns = Columns.of(fields)
    raw_id = columns.raw_id
    runs: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = []
    for row in rows(text, separator, _is_row_head):
        values = tuple(row.split(separator, len(fields) - 1))
        if len(values) != len(fields):
            raise ParseError("sacct", row, "wrong number of fields")
        job, dot, _ = values[raw_id].partition(".")
        if not dot:
            runs.append((values, []))
        elif not runs or runs[-1][0][raw_id] != job:
            raise ParseError("sacct", row, "a step out of its job's record (forged?)")
        elif any(step[raw_id] == values[raw_id] for step in runs[-1][1]):
            raise ParseError("sacct", row, "a step twice in one record (forged?)")
        else:
            runs[-1][1].append(values)
    jobs: dict[int, HistoryRow] = {}
    for values, steps in runs:
        run = _run(values, steps, columns)
        if eligible_before is not None and not (
            run.eligible_time is not None and run.eligible_time < eligible_before
        ):
            continue
        kept = jobs.get(run.job_id)
        if kept is None:
            jobs[run.job_id] = run
        elif kept.user != run.user:  # the runs of one job are one user's
            raise ParseError("sacct", values[raw_id], "a job of two users (forged by a name?)")
        else:
            jobs[run.job_id] = _later(kept, run)
    return [jobs[job_id] for job_id in sorted(jobs)]


def _step(fields: tuple[str, ...], columns: Sequence[str]) -> StepRecord:
    value = dict(zip(columns, fields, strict=True))
    code, _, signal = value["ExitCode"].partition(":")
    return StepRecord(
        step_id=value["JobIDRaw"].partition(".")[2],
        display_id=value["JobID"],
        name=value["JobName"],
        state=value["State"].split(" ")[0],
        exit_code=int_or_none(code),
        signal=int_or_none(signal),
        elapsed_seconds=int_or_none(value["ElapsedRaw"]),
        cpu_seconds=parse_cpu_time(value["TotalCPU"]),
        max_rss_bytes=parse_size(value["MaxRSS"]),
        node_list=text_or_none(value["NodeList"]),
    )


def history_record(row: HistoryRow) -> HistoryRecord:
    """The job of a row, read in full, with its steps."""
    value = dict(zip(row.columns, row.fields, strict=True))
    job = job_record(value, cpus="AllocCPUS", time_limit="TimelimitRaw")
    return HistoryRecord(
        **{f: getattr(job, f) for f in AccountingRecord.__dataclass_fields__},
        qos=text_or_none(value.get(QOS_FIELD, "")),
        elapsed_seconds=int_or_none(value["ElapsedRaw"]),
        cpu_seconds=parse_cpu_time(value["TotalCPU"]),
        memory_bytes=_memory(value),
        steps=tuple(_step(step, row.columns) for step in row.steps),
    )


def parse_history(
    text: str, boundary: str, fields: Sequence[str] = HISTORY_FIELDS
) -> list[HistoryRecord]:
    """Every job in output made by `history_command` with this boundary and field list, steps
    attached, ordered by job id."""
    return [history_record(row) for row in history_rows(text, boundary, fields)]


def efficiency(job: HistoryRecord) -> Efficiency | None:
    """seff's figures: CPU time over elapsed times allocated CPUs, the largest step MaxRSS over the
    allocated memory. None while the job has not ended (accounting does not know them yet)."""
    if job.end_time is None or job.elapsed_seconds is None or job.cpu_seconds is None:
        return None
    core_seconds = job.elapsed_seconds * job.num_cpus
    rss = [s.max_rss_bytes for s in job.steps if s.max_rss_bytes is not None]
    max_rss = max(rss) if rss else None
    return Efficiency(
        elapsed_seconds=job.elapsed_seconds,
        cpu_seconds=job.cpu_seconds,
        cpu_efficiency_percent=(
            round(100 * job.cpu_seconds / core_seconds, 2) if core_seconds else None
        ),
        max_rss_bytes=max_rss,
        memory_efficiency_percent=(
            round(100 * max_rss / job.memory_bytes, 2)
            if max_rss is not None and job.memory_bytes
            else None
        ),
    )
