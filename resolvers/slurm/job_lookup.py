"""One job by id from a long-lived `scontrol` (show job), read as the squeue row it stands for,
or refused. Pure.

`squeue --jobs=<id>` costs a process (3-8 ms of exec and reading slurm.conf); a session answers
`show job <id>` in about a millisecond (transport/interactive.py). But scontrol prints free text
(a job's name, work directory, paths) raw between `Key=value` pairs, where squeue's rows carry a
random boundary: a job's owner can write ` UserId=bob(1002)` or a newline into a name. So an
answer is translated only when its reading is provably the only one, and otherwise refused (the
transport then runs squeue itself, in the same round trip):

- exactly one line, starting `JobId=`, with no CR and no \\x1e or \\x1f anywhere;
- its keys are, in order, those of one Slurm version's profile below: every required key once,
  optional keys only where the profile has them, nothing else (a mail address, a reservation,
  a comment, a het job, a second line... all go to squeue);
- every value a user writes (JobName, Command, WorkDir, StdErr, StdIn, StdOut, Features,
  Licenses, Network) is followed by a required key with no optional key possible between them.
  A ` Key=` written inside such a value is then either that required key a second time, or a
  key out of the profile's order, or an unknown one: each is refused. So each accepted value is
  exactly what the user wrote, and no field Slurm sets (user, state, times...) can be forged.

The row is squeue's as `JobRow.fields()` reads it, field by field (tests/resolvers compare both
on the real cluster of each version), except STDOUT/STDERR: squeue prints the --output pattern,
scontrol the path it expands to. Those are the path scontrol printed here, so a lookup whose
query reads output paths or patterns is never answered this way (JobScope.paths).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence

from resolvers.slurm.interactive import scontrol_session
from resolvers.slurm.jobs import FIELD_SEPARATOR, RECORD_SEPARATOR
from resolvers.slurm.keyvalue import KEY
from transport.base import Interactive

_OPTIONAL = "?"


@dataclasses.dataclass(frozen=True)
class _Profile:
    """One Slurm version's keys in print order, each with whether it may be left out."""

    keys: tuple[tuple[str, bool], ...]
    required: frozenset[str]

    @classmethod
    def of(cls, words: str) -> _Profile:
        keys = tuple((w.rstrip(_OPTIONAL), w.endswith(_OPTIONAL)) for w in words.split())
        return cls(keys, frozenset(key for key, optional in keys if not optional))


# `scontrol -o show job` of a batch job, key by key (`?`: printed only for some jobs), as Slurm
# 22.05 and 24.11 print it (slurm_sprint_job_info). Only Slurm-written values sit next to an
# optional key.
_HEAD = """
JobId ArrayJobId? ArrayTaskId? ArrayTaskThrottle? JobName UserId GroupId MCS_label Priority Nice
Account QOS JobState Reason Dependency Requeue Restarts BatchFlag Reboot ExitCode RunTime
TimeLimit TimeMin SubmitTime EligibleTime AccrueTime StartTime EndTime Deadline SuspendTime
SecsPreSuspend LastSchedEval Scheduler Partition AllocNode:Sid ReqNodeList ExcNodeList NodeList
BatchHost? NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T
"""
_TAIL = """
Socks/Node NtasksPerN:B:S:C CoreSpec MinCPUsNode MinMemoryCPU? MinMemoryNode? MinTmpDiskNode
Features DelayBoot OverSubscribe Contiguous Licenses Network Command WorkDir StdErr StdIn StdOut
"""
PROFILES = {
    "22.05": _Profile.of(_HEAD + "TRES" + _TAIL + "Power"),
    "24.11": _Profile.of(_HEAD + "ReqTRES AllocTRES" + _TAIL),
}
# Values a user writes: each must end where a required key begins.
_USER_WRITTEN = frozenset(
    {
        *("JobName", "Command", "WorkDir", "StdErr", "StdIn", "StdOut"),
        *("Features", "Licenses", "Network"),
    }
)


def _fits(keys: Sequence[str], profile: tuple[tuple[str, bool], ...]) -> bool:
    """`keys` are `profile`'s keys in its order, each required one present, once."""
    at = 0
    for key in keys:
        while at < len(profile) and profile[at][0] != key:
            if not profile[at][1]:
                return False  # a required key skipped
            at += 1
        if at == len(profile):
            return False  # unknown, repeated or out of order
        at += 1
    return all(optional for _, optional in profile[at:])


def _proven_fields(line: str) -> dict[str, str] | None:
    """The line's values by key, if one profile reads it and no user value can hide a key."""
    # [text before the first key, key, its value, key, its value, ...]: one pass of the
    # pattern in C, with no match object per key (a job's line has about 60 of them).
    parts = KEY.split(line)
    keys = parts[1::2]
    if not keys or parts[0] or keys[0] != "JobId":
        return None
    profile = next((p for p in PROFILES.values() if _fits(keys, p.keys)), None)
    if profile is None:
        return None
    required = profile.required
    for key, following in itertools.pairwise(keys):
        if key in _USER_WRITTEN and following not in required:
            return None
    # Each key is there once (_fits): the pairs are the whole line.
    fields = dict(zip(keys, parts[2::2], strict=True))
    if ("ArrayJobId" in fields) != ("ArrayTaskId" in fields):
        return None
    return fields


def squeue_text(answer: str, boundary: str, users: frozenset[str] | None = None) -> str | None:
    """What `squeue_command(boundary, [id], users=users)` prints for the job of `answer`
    (scontrol's `show job <id>`), or None if the answer cannot be proven to read only one way.
    An empty answer (the id is unknown; scontrol said so on stderr, as squeue does) is an empty
    row list, and so is a job of a user not in `users`, as squeue --user leaves it out."""
    if not answer:
        return ""
    if any(c in answer for c in "\r" + FIELD_SEPARATOR + RECORD_SEPARATOR):
        return None
    line = answer.removesuffix("\n")
    if "\n" in line:
        return None  # two records, or a value holding a newline: squeue tells them apart
    fields = _proven_fields(line)
    if fields is None:
        return None
    user = fields["UserId"].partition("(")[0]
    if users is not None and user not in users:
        return ""
    job_id = fields["JobId"]
    task = fields.get("ArrayTaskId")
    array_job = fields.get("ArrayJobId", job_id)
    if task is None:
        display = job_id
    elif task.isdecimal():
        display = f"{array_job}_{task}"
    else:
        display = f"{array_job}_[{task}]"
    structured = (
        display,
        job_id,
        array_job,
        "N/A" if task is None else task,
        user,
        fields["Account"],
        fields["JobState"],
        fields["Reason"],
        fields["Partition"],
        fields["NodeList"],
        fields["SubmitTime"],
        fields["StartTime"],
        fields["EndTime"],
        fields["TimeLimit"],
        fields["NumNodes"].partition("-")[0],  # a pending job's `1-2`: squeue shows the least
        fields["NumCPUs"].partition("-")[0],
        fields["ExitCode"],  # code:signal, which squeue prints from 24.11 on
        fields["Priority"],
        fields["QOS"],
        fields["Dependency"],
    )
    free = (
        fields["JobName"],
        "(null)",  # no Comment key: the job has none (a job with one is refused above)
        fields["WorkDir"],
        fields["StdOut"],
        fields["StdErr"],
        fields["Command"],
    )
    separator = FIELD_SEPARATOR + boundary
    return (
        FIELD_SEPARATOR.join(structured)
        + separator
        + separator.join(free)
        + RECORD_SEPARATOR
        + boundary
        + "\n"
    )


def show_job_as_squeue(
    job_id: str, boundary: str, users: frozenset[str] | None = None
) -> Interactive:
    """A session's `show job <job_id>`, read as `squeue_command(boundary, [job_id],
    users=users)` prints it. `job_id` is a validated numeric id (resolvers/scope.py)."""
    if not job_id.isdecimal():
        raise ValueError("a session looks a job up by its numeric id")
    translate = functools.partial(squeue_text, boundary=boundary, users=users)
    return scontrol_session(("--oneliner",), f"show job {job_id}", translate)
