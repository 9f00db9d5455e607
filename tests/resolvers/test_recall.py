"""The lookup program (resolvers/slurm/recall.py) run by a real /bin/sh, with stand-ins for
squeue and sacct (printf, sh): the second command runs only when the first printed nothing,
each result comes back whole, and no value is ever parsed by the shell. Slurm's own answers
are tested on the cluster (tests/server/test_job_recall.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from resolvers.slurm.recall import recall_command, split_recall
from transport.base import Command, CommandResult

MARK = "a1b2c3d4e5f6"


def run(first: Command, second: Command) -> CommandResult:
    command = recall_command(MARK, first, second, "alice")
    assert command.user == "alice" and command.argv[:2] == ("sh", "-c")
    done = subprocess.run(command.argv, capture_output=True, text=True, timeout=30, check=False)
    return CommandResult(command.argv, done.stdout, done.stderr, done.returncode)


def test_rows_answer_alone(tmp_path: Path) -> None:
    """The first command printed rows: they are its answer, and the second never runs."""
    flag = tmp_path / "ran"
    first = Command(("printf", "row 1\\nrow 2\\n"))
    second = Command(("touch", str(flag)))
    found = split_recall(run(first, second), MARK, first, second)
    assert found.squeue == CommandResult(first.argv, "row 1\nrow 2\n", "", 0)
    assert found.sacct is None and not flag.exists()


def test_no_row_runs_the_second_and_keeps_both_answers() -> None:
    """Nothing printed (an unknown id fails squeue): the second runs, and each command's
    output, messages and exit status come back as its own."""
    first = Command(("sh", "-c", "echo 'Invalid job id specified' >&2; exit 1"))
    second = Command(("sh", "-c", "echo 'a|b'; echo oops >&2; exit 0"))
    found = split_recall(run(first, second), MARK, first, second)
    assert found.squeue == CommandResult(first.argv, "", "Invalid job id specified\n", 1)
    assert found.sacct == CommandResult(second.argv, "a|b\n", "oops\n", 0)


def test_values_are_never_shell_code(tmp_path: Path) -> None:
    """Arguments holding shell syntax reach the commands as they are, in both halves."""
    flag = tmp_path / "pwned"
    hostile = f"$(touch {flag}); `touch {flag}` \"'\n*"
    first = Command(("printf", "", hostile))
    second = Command(("printf", "%s", hostile))
    found = split_recall(run(first, second), MARK, first, second)
    assert found.sacct is not None and found.sacct.stdout == hostile
    assert not flag.exists()
