"""A job's output files, read on the head node as the job's owner, the end of each only.

The file system decides who may read: the reading command runs as the job's owner (never as
root, whoever asks: an administrator allowed to read output reads with the owner's rights), in
the transport's clean environment, so a file the owner cannot open is refused by the kernel, and
a path such as /proc/self/environ would show nothing of the server's. Only regular files are
read; anything else (FIFOs, devices, /proc, /sys) is refused as PERMISSION_DENIED. All reads one
request asks for go to the head node as one batch, after the snapshot that named the files.

A job's output is what a run of it wrote, nothing else. Nothing is read before the job has
started (`has_started`): until slurmstepd opens the file for a run of this job, whatever lies at
its path is not its output (a file another user planted in a shared directory, or one an earlier
job of the same id left: job ids start again with a fresh cluster state). And once it has
started, a file at its path that its user does not own is not its output either (_READ_TAIL).
Both answer null, as a file that does not exist does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from resolvers.allowance import take_output_allowance
from resolvers.ids import BadUserInput
from resolvers.slurm.filename import BatchJob, resolve_pattern
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.jobs import JobRecord
from resolvers.slurm.values import is_decimal
from slurm_graphql.errors import SlurmGraphQLError
from transport.base import Command, CommandResult, Transport

DEFAULT_TAIL_BYTES = 65_536
MAX_TAIL_BYTES = 1_048_576

# Marks a path the reading program refused (not a regular file, or a kernel file system).
REFUSED_MARK = "slurm-graphql: not a regular file"
EXIT_REFUSED_PATH = 77
# Marks a file the job's user does not own: not the job's output (see _READ_TAIL).
FOREIGN_MARK = "slurm-graphql: not the job owner's file"
EXIT_FOREIGN_FILE = 78

# Runs as the job's owner, never as root, in the transport's clean environment. The path is a
# positional argument, never part of the program text. It refuses, with the same answer whether
# the target exists or not: paths under /proc, /sys and /dev (before and after resolving
# symlinks); anything that is not a regular file (so a FIFO is never opened and cannot block);
# and, checked again on the descriptor actually opened, a file that is not regular or lives on a
# kernel file system (a symlink swapped in between the test and the open). A file its reader (the
# job's user) does not own is not the job's output: slurmstepd creates the output files as the
# job's user, so another user's file at the path was put there by them (bob's file planted at
# the path of alice's job in a shared directory: alice's job, unable to open it, fails to launch
# and has started; or, if bob made it writable by all, alice's job writes into a file bob owns and
# may rewrite at will). Then the size (to tell whether the tail is the whole file) and the last
# bytes, read from that same descriptor.
_READ_TAIL = f"""\
set -u
refuse() {{ echo "{REFUSED_MARK}" >&2; exit {EXIT_REFUSED_PATH}; }}
kernel_path() {{ case $1 in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) return 0;; esac; return 1; }}
case $1 in /*) ;; *) refuse;; esac
if kernel_path "$1"; then refuse; fi
real=$(realpath -e -- "$1") || exit 66
if kernel_path "$real" || [ ! -f "$real" ] || [ -p "$real" ] || [ -S "$real" ]; then refuse; fi
exec 3<"$real" || exit 66
opened=$(readlink /dev/fd/3) || refuse
if kernel_path "$opened"; then refuse; fi
case $(stat -L -c %F /dev/fd/3) in "regular file"|"regular empty file") ;; *) refuse;; esac
case $(stat -f -L -c %T /dev/fd/3) in proc|sysfs|devtmpfs|devpts|securityfs|debugfs) refuse;; esac
if [ "$(stat -L -c %u /dev/fd/3)" != "$(id -u)" ]; then
  echo "{FOREIGN_MARK}" >&2; exit {EXIT_FOREIGN_FILE}
fi
size=$(stat -L -c %s /dev/fd/3) || exit 66
printf '%s\\n' "$size"
exec tail -c "$2" <&3
"""


class OutputForbidden(SlurmGraphQLError):
    """The requesting user may not read this file."""


@dataclass(frozen=True)
class OutputTail:
    path: str
    text: str  # the last bytes, decoded as UTF-8 with invalid bytes replaced
    size_bytes: int
    truncated: bool  # True when the file is longer than what `text` holds


def validate_tail_bytes(value: int) -> int:
    if not 0 <= value <= MAX_TAIL_BYTES:
        raise BadUserInput(f"tailBytes must be between 0 and {MAX_TAIL_BYTES}, got {value}")
    return value


def output_file(record: JobRecord, stderr: bool, slurm_version: str | None) -> str | None:
    """The file a job writes its stdout (or stderr) to: its pattern, resolved as slurmstepd
    does; None while that is not known (a pending job's `%N`) or if the job writes none."""
    pattern = record.stderr_pattern if stderr else record.stdout_pattern
    if pattern is None:
        return None
    task = record.array_task_id
    remainder = task is not None and not is_decimal(task)  # "3-6%2": tasks not started yet
    hosts = expand_hostlist(record.node_list or "")
    job = BatchJob(
        job_id=None if remainder else record.job_id,
        array_job_id=record.array_job_id,
        array_task_id=int(task) if task is not None and is_decimal(task) else None,
        user=record.user,
        name=record.name,
        work_dir=record.work_dir,
        # Slurm runs the batch script on the allocation's first node; its node name stands for
        # the host name (slurmstepd writes the machine's short host name), as on clusters
        # where they agree, and as Slurm's own expansion (24.11's scontrol) does.
        batch_host=hosts[0] if hosts else None,
        slurm_version=slurm_version,
    )
    return resolve_pattern(pattern, job)


# States in which no run of the job is under way or over: waiting (held or not), waiting again
# after a requeue (REQUEUED, REQUEUE_HOLD, SPECIAL_EXIT...), nodes still booting (CONFIGURING: the
# batch script, which opens the output files, has not been launched), or ended without ever
# running (BOOT_FAIL, REVOKED; a job cancelled while pending is CANCELLED without nodes, below).
_NOT_STARTED_STATES = frozenset(
    {
        "PENDING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SPECIAL_EXIT",
        "RESV_DEL_HOLD",
        "CONFIGURING",
        "BOOT_FAIL",
        "REVOKED",
    }
)


def has_started(record: JobRecord, seen_at: float) -> bool:
    """Whether a run of the job has started, as of the snapshot taken at `seen_at` (epoch s):
    a state past waiting, nodes allocated (a job cancelled while pending has none, and a start
    time equal to its end) and a start time known and not after `seen_at` (a pending job's is
    when Slurm expects it to start).

    A requeued job waiting for its next run counts as not started, although its earlier run
    wrote the file: from the moment it is requeued nothing vouches that the file at its path is
    still that run's (in a shared directory it can be removed and another user's planted in its
    place before the next run), and the next run opens it again anyway. Its output is back
    once that run has started.
    """
    if record.state in _NOT_STARTED_STATES or record.node_list is None:
        return False
    start = record.start_time
    return start is not None and start <= seen_at


def read_tail_command(path: str, tail_bytes: int, user: str | None) -> Command:
    if "\x00" in path:
        raise BadUserInput("the path holds a NUL byte")
    return Command(("sh", "-c", _READ_TAIL, "sh", path, str(tail_bytes)), user=user)


def parse_tail(path: str, tail_bytes: int, result: CommandResult) -> OutputTail | None:
    """The tail of `path`; None if the file does not exist (yet) or is not the job's (another
    user's file at its path)."""
    if result.exit_code == EXIT_FOREIGN_FILE and FOREIGN_MARK in result.stderr:
        return None
    if result.exit_code != 0:
        refused = result.refused or (
            result.exit_code == EXIT_REFUSED_PATH and REFUSED_MARK in result.stderr
        )
        if refused or "permission denied" in result.stderr.lower():
            raise OutputForbidden(f"not allowed to read {path}")
        return None
    size_line, _, text = result.stdout.partition("\n")
    size = int(size_line.strip() or 0)
    return OutputTail(path, text, size, truncated=size > tail_bytes)


class OutputReader:
    """Collects the reads of one request and sends them to the head node together."""

    def __init__(self, transport: Transport, user: str | None) -> None:
        self._transport = transport
        self._user = user
        self._pending: dict[tuple[str, int], asyncio.Future[OutputTail | None]] = {}
        self._flush: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, path: str, tail_bytes: int) -> OutputTail | None:
        validate_tail_bytes(tail_bytes)
        take_output_allowance(tail_bytes)  # before anything is queued for the head node
        key = (path, tail_bytes)
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._pending[key] = future
            if self._flush is None:
                # Every resolver of this execution step asks before the loop turns again.
                self._flush = loop.call_soon(self._start)
        return await asyncio.shield(future)

    def _start(self) -> None:
        batch, self._pending, self._flush = self._pending, {}, None
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[tuple[str, int], asyncio.Future[OutputTail | None]]) -> None:
        keys = list(batch)
        try:
            commands = [read_tail_command(path, tail, self._user) for path, tail in keys]
            results = await self._transport.run(commands)
        except BaseException as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: each waiter re-raises its own copy
            if not isinstance(exc, Exception):
                raise
            return
        for (path, tail), result in zip(keys, results, strict=True):
            future = batch[(path, tail)]
            try:
                future.set_result(parse_tail(path, tail, result))
            except Exception as exc:  # a refusal, or output of an unexpected shape
                future.set_exception(exc)
                future.exception()
