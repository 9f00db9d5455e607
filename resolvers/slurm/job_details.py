"""One job in detail, from `scontrol -o show job`: what Slurm holds beyond squeue's columns
(its exit code as `code:signal`, restarts, the batch host, allocated TRES). Pure.

Free-text values (JobName, Comment, paths) may contain `word=value`; only keys scontrol is known
to print end them (see keyvalue.py). squeue stays the source for listings: its rows cannot be
forged by a job name, and this parser is for one job the caller already knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.interactive import scontrol_session
from resolvers.slurm.keyvalue import parse_records
from resolvers.slurm.values import (
    epoch_or_none,
    int_or_none,
    is_decimal,
    minutes_or_none,
    text_or_none,
)
from transport.base import Command

KNOWN_KEYS = tuple(
    """
    JobId ArrayJobId ArrayTaskId ArrayTaskThrottle HetJobId HetJobOffset HetJobIdSet JobName
    UserId GroupId MCS_label Priority Nice Account QOS JobState Reason Dependency Requeue
    Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime
    EligibleTime AccrueTime StartTime EndTime Deadline SuspendTime SecsPreSuspend
    LastSchedEval Scheduler Partition AllocNode:Sid ReqNodeList ExcNodeList NodeList
    BatchHost NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T TRES Socks/Node
    NtasksPerN:B:S:C CoreSpec MinCPUsNode MinMemoryCPU MinMemoryNode MinTmpDiskNode Features
    DelayBoot OverSubscribe Contiguous Licenses Network Command WorkDir Comment AdminComment
    SystemComment StdErr StdIn StdOut Power Reservation Container ContainerID Prefer Extra
    MailUser MailType CpusPerTres TresPerNode TresPerJob MemPerTres TresBind TresFreq
    KillOInInvalidDependent
""".split()  # noqa: SIM905 - a word list reads and diffs better than quoted strings
)
FREE_TEXT_KEYS = tuple(
    """
    JobName Comment AdminComment SystemComment Command WorkDir StdErr StdIn StdOut Extra
""".split()  # noqa: SIM905 - a word list reads and diffs better than quoted strings
)


@dataclass(frozen=True, slots=True)
class JobDetails:
    job_id: int
    array_job_id: int | None
    array_task_id: str | None
    name: str
    user: str
    state: str
    reason: str | None
    exit_code: int | None
    signal: int | None
    restarts: int
    partition: str | None
    node_list: str | None
    batch_host: str | None
    submit_time: int | None
    start_time: int | None
    end_time: int | None
    time_limit_minutes: int | None
    num_nodes: int
    num_cpus: int
    tres: str | None
    work_dir: str | None
    stdout_path: str | None
    stderr_path: str | None
    command: str | None
    comment: str | None


def show_job_command(job_id: str) -> Command:
    """One job (every task, for an array), one line each, times as epoch seconds.

    `job_id` must have been validated (resolvers/ids.py) by the caller.
    """
    return Command(
        ("scontrol", "--oneliner", "show", "job", job_id),
        env={"SLURM_TIME_FORMAT": "%s"},
        interactive=scontrol_session(("--oneliner",), f"show job {job_id}"),
    )


def parse_job_details(text: str) -> list[JobDetails]:
    details = []
    for fields in parse_records(text, KNOWN_KEYS, FREE_TEXT_KEYS):
        value = {key: raw.strip() for key, raw in fields.items()}.get
        job_id = value("JobId", "")
        if not is_decimal(job_id):
            raise ParseError("scontrol show job", str(fields)[:200], "no numeric JobId")
        task = text_or_none(value("ArrayTaskId", ""))
        code, _, signal = value("ExitCode", "").partition(":")
        details.append(
            JobDetails(
                job_id=int(job_id),
                array_job_id=int_or_none(value("ArrayJobId", "")) if task else None,
                array_task_id=task,
                # Free text keeps its spaces: only the separator before the next key is cut.
                name=fields.get("JobName", "").removesuffix(" "),
                user=value("UserId", "").split("(")[0],
                state=value("JobState", "UNKNOWN"),
                reason=None if value("Reason") == "None" else text_or_none(value("Reason", "")),
                exit_code=int_or_none(code),
                signal=int_or_none(signal),
                restarts=int_or_none(value("Restarts", "")) or 0,
                partition=text_or_none(value("Partition", "")),
                node_list=text_or_none(value("NodeList", "")),
                batch_host=text_or_none(value("BatchHost", "")),
                submit_time=epoch_or_none(value("SubmitTime", "")),
                start_time=epoch_or_none(value("StartTime", "")),
                end_time=epoch_or_none(value("EndTime", "")),
                time_limit_minutes=minutes_or_none(value("TimeLimit", "")),
                num_nodes=int_or_none(value("NumNodes", "")) or 0,
                num_cpus=int_or_none(value("NumCPUs", "")) or 0,
                tres=text_or_none(value("TRES", "")),
                work_dir=text_or_none(value("WorkDir", "")),
                stdout_path=text_or_none(value("StdOut", "")),
                stderr_path=text_or_none(value("StdErr", "")),
                command=text_or_none(value("Command", "")),
                comment=text_or_none(fields.get("Comment", "").removesuffix(" ")),
            )
        )
    return details
