"""Slurm's output filename patterns (`--output=slurm-%A_%a.out`), resolved as slurmstepd does
for a batch script. Pure.

squeue prints the pattern as given, so the file a job actually wrote is found by expanding it:
`%j`/`%J` job id, `%A` array master id, `%a` array index, `%u` user, `%x` job name, `%N` the
batch host, `%n`/`%t` 0 and `%s` "batch" for the batch step, `%%` a percent sign; a number
between `%` and the letter zero-pads a number. A pattern holding a backslash is used as is.
"""

from __future__ import annotations

import re

# slurmstepd writes NO_VAL for the array index of a job that is not part of an array.
NO_ARRAY_INDEX = 4294967294

_FIELD = re.compile(r"%(\d*)([%AaJjNnstux])")


def expand_output_pattern(
    pattern: str,
    *,
    job_id: int,
    array_job_id: int | None,
    array_task_id: int | None,
    user: str,
    name: str,
    batch_host: str | None,
) -> str:
    if "\\" in pattern:
        return pattern.replace("\\", "")

    def number(width: str, value: int) -> str:
        return f"{value:0{int(width)}d}" if width else str(value)

    def replace(match: re.Match[str]) -> str:
        width, letter = match.groups()
        if letter == "%":
            return "%"
        if letter in "jJ":
            return number(width, job_id)
        if letter == "A":
            return number(width, array_job_id if array_job_id is not None else job_id)
        if letter == "a":
            return number(width, array_task_id if array_task_id is not None else NO_ARRAY_INDEX)
        if letter in "nt":
            return number(width, 0)
        if letter == "s":
            return "batch"
        if letter == "u":
            return user
        if letter == "x":
            return name
        return batch_host if batch_host is not None else match.group(0)

    return _FIELD.sub(replace, pattern)
