"""Job submission and control as single commands that also report the job afterwards. Pure.

A write and the read of its result must happen in order on the head node, and a transport batch
runs its commands concurrently. So each write is one `sh -c PROGRAM sh ARGS...` command: PROGRAM
is a constant of this module, and everything that comes from a client is a positional argument,
expanded only inside double quotes. No client value is ever parsed by the shell, and the whole
write costs one round trip, reading of the job included.

The submit program also makes submission idempotent: with a key, it first looks for a job of the
same user whose comment carries that key, under a per-user transport lock (`Command.lock`, held
by the transport in a directory users cannot write), and reports that job instead of submitting
again. The key lives with the job in Slurm, so a retry finds the job after a client timeout or a
server restart, for as long as Slurm remembers the job. `keyed_job_matches` checks the answer
again in Python: the job must be the requesting user's and carry exactly that key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.job_fields import KEY_END, KEY_MARKER, split_comment
from resolvers.slurm.jobs import JobRow, parse_squeue, squeue_command
from resolvers.slurm.values import is_decimal
from transport.base import Command

# Job ids a control command accepts: a job or one array task (Slurm's own forms).
CONTROL_JOB_ID = re.compile(r"^\d{1,10}(?:_\d{1,10})?\Z", re.ASCII)


def _show_prefix(count: int) -> str:
    """Shell lines that take the squeue argv from the first `count` positional arguments."""
    names = " ".join(f'q{i}="${{{i}}}"' for i in range(1, count + 1))
    args = " ".join(f'"$q{i}"' for i in range(1, count + 1))
    return f'{names}\nshift {count}\nshow() {{ SLURM_TIME_FORMAT=%s {args} --jobs="$1"; }}\n'


# Marks the refusal of a script that could not be fetched from S3 (exit status 65).
FETCH_FAILED = "slurm-graphql: cannot fetch the script:"

_SUBMIT_BODY = f"""\
case $key in *[!A-Za-z0-9_-]*) echo "invalid key" >&2; exit 64;; esac
case $mark in ''|*[!A-Za-z0-9]*) echo "invalid boundary" >&2; exit 64;; esac
cd "${{HOME:-/}}" 2>/dev/null || cd /
me=$(id -un)
if [ -n "$src" ]; then
  # The script is an S3 object, fetched with the head node's AWS CLI and the user's own AWS
  # configuration (nothing of the server's reaches this environment). mktemp makes a new file
  # of the user's, mode 0600, that no one else can replace.
  script=$(mktemp) || exit 70
  trap 'rm -f "$script"' EXIT
  if ! err=$("$aws" s3 cp --only-show-errors "$src" "$script" 2>&1); then
    printf '%s %s\n' "{FETCH_FAILED}" "$err" >&2
    exit 65
  fi
  exec 0<"$script"
fi
if [ -n "$key" ]; then
  # Keyed submissions of one user run under the transport's lock (Command.lock), so two
  # retries cannot both submit. Each row starts with a boundary chosen at random for this
  # request and names its user: a job name or comment holding a newline cannot forge a row.
  # A lookup that fails must not look like "no such job": that would submit a second one.
  rows=$(squeue --noheader --states=all --user="$me" --format="$mark %F %u %k") || exit
  found=$(printf '%s\\n' "$rows" |
    sed -n "s/^$mark \\([0-9][0-9]*\\) $me {KEY_MARKER}$key{KEY_END}.*/\\1/p" | head -n 1)
  if [ -n "$found" ]; then
    printf 'EXISTING %s\\n' "$found"
    show "$found"
    exit
  fi
fi
conf=SLURM_GRAPHQL_SUBMIT=1
if [ -n "${{SLURM_CONF-}}" ]; then conf="SLURM_CONF=$SLURM_CONF"; fi
# sbatch runs in a clean environment: nothing but these reaches the job.
out=$(env -i "PATH=$PATH" "HOME=${{HOME:-/}}" "USER=$me" "LOGNAME=$me" "$conf" "$@") || exit
id=${{out%%;*}}
printf 'SUBMITTED %s\\n' "$id"
show "$id"
"""

# Marks the refusal of an action on a job the requester may not see (exit status 66).
NOT_VISIBLE = "slurm-graphql: no such job"

_CONTROL_BODY = f"""\
if [ -n "$owner" ]; then
  # Only `owner`'s jobs may be seen: any other job is answered as a missing one, and decided
  # before anything is done to it. squeue failing (an unknown id, Slurm down) speaks for itself.
  owners=$(squeue --all --states=all --noheader --Format=UserName:0 --jobs="$job") || exit
  if [ -z "$owners" ] || printf '%s\\n' "$owners" | grep -qvxF -e "$owner"; then
    echo "{NOT_VISIBLE}" >&2
    exit 66
  fi
fi
# The action's own output goes to stderr: stdout is the job as squeue shows it afterwards.
"$@" >&2 || exit
show "$job"
"""


def _program(first: str, count: int, body: str) -> str:
    """`first` names the leading positional arguments, then come `count` of squeue's argv."""
    names = first.split()
    taken = " ".join(f'{name}="${{{i}}}"' for i, name in enumerate(names, 1))
    return f"set -u\n{taken}\nshift {len(names)}\n{_show_prefix(count)}{body}"


def submit_command(
    boundary: str,
    key: str | None,
    environment: Sequence[str],
    options: Sequence[str],
    script: bytes | str,
    user: str | None,
    aws_cli: str = "aws",
) -> Command:
    """Submit a script with sbatch `options` as `user`, then show the job (or the job that
    already carries `key`). `script` is the text (bytes) or an s3:// URI (str) to fetch."""
    show = squeue_command(boundary).argv
    program = _program("key mark src aws", len(show), _SUBMIT_BODY)
    source = script if isinstance(script, str) else ""
    argv = ("sh", "-c", program, "sh", key or "", boundary, source, aws_cli, *show)
    argv += (*environment, "sbatch", *options)
    stdin = None if isinstance(script, str) else script
    return Command(argv, stdin=stdin, user=user, lock=submit_lock(user) if key else None)


def submit_lock(user: str | None) -> str:
    """The transport lock that serialises one user's keyed submissions."""
    return f"submit.{user}" if user is not None else "submit"


def control_command(
    boundary: str,
    job_id: str,
    action: Sequence[str],
    user: str | None,
    owner: str | None = None,
) -> Command:
    """Run `action` (scancel/scontrol argv) as `user`, then show job `job_id`. With `owner`,
    nothing is done unless every row of the job is `owner`'s (exit 66, NOT_VISIBLE)."""
    if not CONTROL_JOB_ID.match(job_id):
        raise ValueError(f"{job_id!r} is not a job or array task id")
    show = squeue_command(boundary).argv
    program = _program("job owner", len(show), _CONTROL_BODY)
    argv = ("sh", "-c", program, "sh", job_id, owner or "", *show, *action)
    return Command(argv, user=user)


@dataclass(frozen=True)
class Submitted:
    job_id: int
    created: bool  # False when a job with the same key already existed
    rows: tuple[JobRow, ...]


def parse_submit(stdout: str, boundary: str) -> Submitted:
    """What `submit_command` printed: a status line, then squeue rows of the job."""
    status, _, rest = stdout.partition("\n")
    word, _, job_id = status.partition(" ")
    if word not in ("SUBMITTED", "EXISTING") or not is_decimal(job_id.strip()):
        raise ParseError("submit", status, "no job id")
    rows = tuple(parse_squeue(rest, boundary))
    return Submitted(int(job_id), word == "SUBMITTED", rows)


def keyed_job_matches(row: JobRow, user: str | None, key: str) -> bool:
    """Whether `row`, reported as the job that already carries `key`, is one the requesting
    `user` may be given: theirs (when the request names a user), with exactly that key."""
    if user is not None and row.user != user:
        return False
    return split_comment(row.fields().comment)[1] == key


def primary_row(rows: Sequence[JobRow], job_id: int) -> JobRow | None:
    """The row that stands for job `job_id`: its own record, else its first array task."""
    for row in rows:
        if row.job_id == job_id:
            return row
    for row in rows:
        if row.fields().array_job_id == job_id:
            return row
    return None
