"""One job looked up live, and in accounting only if the controller forgot it: one command. Pure.

`job(id)` for a job Slurm's controller has forgotten (MinJobAge) used to cost two round trips:
`squeue --jobs=X` (nothing), then `sacct` for X. Always running both in one batch would make the
common case, a live job, ~10x slower (squeue 5-10 ms, sacct as a user 90-120 ms). So the lookup
is one `sh -c PROGRAM sh ARGS...` command, run as the requesting user: squeue; then, only when
squeue printed no row, sacct. PROGRAM is a constant of this module (it depends only on how many
arguments squeue's argv has), and every other value is a positional argument, expanded only
inside double quotes: no value is ever parsed by the shell (as resolvers/slurm/actions.py).

Output: squeue's rows as squeue printed them; or, when it printed none, a line `MARK STATUS`
(squeue's exit status), then sacct's output. On stderr, squeue's, then a line `MARK`, then
sacct's. MARK is chosen at random per call, so no job name or Slurm message can forge either
line. `split_recall` gives back the two commands' results, each read by its own parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from transport.base import Command, CommandResult


def _program(count: int) -> str:
    """The constant program for a squeue argv of `count` arguments (sacct's argv follows)."""
    names = " ".join(f'q{i}="${{{i}}}"' for i in range(1, count + 1))
    args = " ".join(f'"$q{i}"' for i in range(1, count + 1))
    return (
        "set -u\n"
        'mark="$1"\n'
        "shift\n"
        f"{names}\n"
        f"shift {count}\n"
        f"rows=$({args})\n"
        "status=$?\n"
        # $(...) dropped the rows' final newline: printed back with them.
        'if [ -n "$rows" ]; then printf \'%s\\n\' "$rows"; exit "$status"; fi\n'
        'printf \'%s %s\\n\' "$mark" "$status"\n'
        "printf '%s\\n' \"$mark\" >&2\n"
        'exec "$@"\n'
    )


@dataclass(frozen=True)
class Recalled:
    """The two results in one: squeue's, and sacct's when it ran (None: squeue printed rows)."""

    squeue: CommandResult
    sacct: CommandResult | None = None


def recall_command(mark: str, squeue: Command, sacct: Command, user: str) -> Command:
    """squeue as `user`, then sacct as `user` only if squeue printed no row. `mark`
    (new_boundary(), fresh per call) tells the two outputs apart."""
    if not mark.isalnum():
        raise ValueError("the mark must be alphanumeric")
    env = dict(squeue.env or {})
    for name, value in (sacct.env or {}).items():
        if env.setdefault(name, value) != value:
            raise ValueError(f"squeue and sacct disagree on {name}")
    argv = ("sh", "-c", _program(len(squeue.argv)), "sh", mark, *squeue.argv, *sacct.argv)
    return Command(argv, env=env, user=user)


def split_recall(result: CommandResult, mark: str, squeue: Command, sacct: Command) -> Recalled:
    """What `recall_command` printed, as the results of squeue and (if it ran) sacct."""
    head, newline, rest = result.stdout.partition("\n")
    word, _, status = head.partition(" ")
    if word != mark or not newline:
        return Recalled(CommandResult(squeue.argv, result.stdout, result.stderr, result.exit_code))
    if not status.isdigit():
        raise ParseError("squeue", head, "no exit status")
    squeue_err, found, sacct_err = result.stderr.partition(mark + "\n")
    if not found:
        raise ParseError("sacct", result.stderr[:200], "no mark before sacct's messages")
    return Recalled(
        CommandResult(squeue.argv, "", squeue_err, int(status)),
        CommandResult(sacct.argv, rest, sacct_err, result.exit_code),
    )
