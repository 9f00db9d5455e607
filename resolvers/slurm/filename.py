"""Slurm's output filename patterns (`--output=slurm-%A_%a.out`), resolved as slurmstepd resolves
them for a batch job (src/slurmd/common/fname.c, 22.05 to 24.11). Pure.

`%j`/`%J` job id, `%A` array master id, `%a` array index, `%b` array index modulo 10 (24.11 on;
older slurmstepd leaves it as written), `%u` user, `%x` job name, `%N` the batch host, `%n`/`%t`
0 and `%s` "batch" for the batch step, `%%` a percent sign. Digits after `%` zero-pad a number
(at most 10). A pattern holding a backslash is used as written, backslashes removed (`\\\\` keeps
one). A relative pattern is relative to the work directory. Without `--output`, a batch job
writes `slurm-%j.out`, or `slurm-%A_%a.out` for an array task.

Where slurmstepd is quirky, this follows it: an unknown letter stays as written, except that
with a width the `%` and all but the last digit vanish (`%12z` gives `2z`); a pattern made of
digits only, other than 0, is /dev/null; an escaped relative pattern is joined to the work
directory without a slash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# slurmstepd prints NO_VAL as the array index of a job that is not part of an array.
NO_ARRAY_INDEX = 4294967294
MAX_WIDTH = 10
_DIGITS = "0123456789"
_SINGLE_TASK = re.compile(r"\s*\+?\d+")
_VERSION = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class BatchJob:
    """What slurmstepd knows of a batch job when it opens its output files.

    `job_id` is None for the pending remainder of an array: its tasks get their ids, and their
    files, when they start. `batch_host` is None until the job runs.
    """

    job_id: int | None
    array_job_id: int | None
    array_task_id: int | None
    user: str
    name: str
    work_dir: str | None
    batch_host: str | None
    slurm_version: str | None  # decides `%b`; None: not known


class _Unknown(Exception):
    """The pattern names something not known yet (a pending job's host, a future task's id)."""


def default_pattern(work_dir: str, array_task: bool) -> str:
    """The pattern of a batch job submitted without --output (as 24.11's squeue prints it)."""
    return f"{work_dir}/slurm-%A_%a.out" if array_task else f"{work_dir}/slurm-%j.out"


def recover_pattern(printed: str, *, work_dir: str | None, job_id: int, array_task: bool) -> str:
    """The pattern behind squeue's STDOUT/STDERR column, on any version.

    Without --output, 22.05 prints `<work dir>/slurm-<job id>.out` (already expanded, and
    wrong for an array task, which writes slurm-%A_%a.out), where 24.11 prints the pattern.
    A literal path equal to that default is not told apart; it names the same file, except for
    an array task whose submitter typed its future job id, which nobody does.
    """
    if work_dir is not None and printed == f"{work_dir}/slurm-{job_id}.out":
        return default_pattern(work_dir, array_task)
    return printed


def slurm_line(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a Slurm version string such as 24.11.5; None if unknown."""
    match = _VERSION.match(version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def resolve_pattern(pattern: str, job: BatchJob) -> str | None:
    """The file slurmstepd opens for `pattern`; None if that is not known yet."""
    if _SINGLE_TASK.fullmatch(pattern) and int(pattern) != 0:
        return "/dev/null"  # "task N only": the batch script is task 0
    escaped = _remove_backslashes(pattern)
    prefix = ""
    if not pattern.startswith("/"):
        if job.work_dir is None:
            return None
        if escaped is not None:
            return job.work_dir + escaped
        prefix = job.work_dir if job.work_dir.endswith("/") else job.work_dir + "/"
    if escaped is not None:
        return escaped
    try:
        return prefix + _expand(pattern, job)
    except _Unknown:
        return None


def _remove_backslashes(pattern: str) -> str | None:
    """slurmstepd's remove_path_slashes: None without a backslash; `\\\\` keeps one."""
    if "\\" not in pattern:
        return None
    out = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if pattern[i + 1 : i + 2] == "\\":
                out.append("\\")
                i += 1
        else:
            out.append(pattern[i])
        i += 1
    return "".join(out)


def _expand(pattern: str, job: BatchJob) -> str:
    """_create_batch_fname, step for step: `start` is where the text not yet copied begins."""
    out: list[str] = []
    start = i = 0
    end = len(pattern)
    while i < end:
        if pattern[i] != "%":
            i += 1
            continue
        if pattern[i + 1 : i + 2] == "%":
            out.append(pattern[start : i + 1])
            i += 2
            start = i
            continue
        i += 1
        width = 0
        if i < end and pattern[i] in _DIGITS:
            out.append(pattern[start : i - 1])
            digits_end = i
            while digits_end < end and pattern[digits_end] in _DIGITS:
                digits_end += 1
            width = min(int(pattern[i:digits_end]), MAX_WIDTH)
            i = digits_end
            start = i - 1  # the last digit: dropped by a known letter, kept by an unknown one
            if i == end:
                break
        value = _field(pattern[i] if i < end else "", width, job)
        if value is not None:
            out.append(pattern[start : i - 1])
            out.append(value)
            i += 1
            start = i
        # An unknown letter is left where it is; the scan goes on from it.
    out.append(pattern[start:])
    return "".join(out)


def _field(letter: str, width: int, job: BatchJob) -> str | None:
    def number(value: int | None) -> str:
        if value is None:
            raise _Unknown(letter)
        return str(value).rjust(width, "0")

    in_array = job.array_job_id is not None
    task: int | None = job.array_task_id if in_array else NO_ARRAY_INDEX
    if letter in ("j", "J"):
        return number(job.job_id)
    if letter == "A":
        return number(job.array_job_id if in_array else job.job_id)
    if letter == "a":
        return number(task)
    if letter == "b":
        line = slurm_line(job.slurm_version)
        if line is None:
            raise _Unknown(letter)
        return number(None if task is None else task % 10) if line >= (24, 11) else None
    if letter in ("n", "t"):
        return number(0)
    if letter == "s":
        return "batch"
    if letter == "u":
        return job.user
    if letter == "x":
        return job.name
    if letter == "N":
        if job.batch_host is None:
            raise _Unknown(letter)
        return job.batch_host
    return None
