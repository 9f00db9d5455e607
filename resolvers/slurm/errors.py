"""Slurm's failures, classified in one place.

Slurm reports most failures as a line on stderr and a non-zero exit, but not all: some commands exit
0 after printing an error. Every command result goes through `check` before its output is parsed.
"""

from __future__ import annotations

import enum
import re

from transport.base import CommandResult
from transport.errors import SlurmGraphQLError


class SlurmErrorKind(enum.Enum):
    CONTROLLER_UNREACHABLE = "controller unreachable"
    AUTHENTICATION = "authentication failed"
    NOT_INSTALLED = "Slurm commands not found"
    INVALID_JOB_ID = "invalid job id"
    INVALID_PARTITION = "invalid partition"
    INVALID_NODE = "invalid node"
    ACCESS_DENIED = "access denied"
    INVALID_STATE = "the job is not in a state that allows this"
    ACCOUNTING_DISABLED = "accounting storage is disabled"
    OTHER = "Slurm reported an error"


class SlurmError(SlurmGraphQLError):
    """Slurm refused or failed; `message` is Slurm's own words, safe to show a user."""

    def __init__(self, kind: SlurmErrorKind, message: str) -> None:
        super().__init__(f"{kind.value}: {message}" if message else kind.value)
        self.kind = kind
        self.message = message


class CommandFailed(SlurmGraphQLError):
    """A command exited non-zero in a way no rule below recognises."""

    def __init__(self, argv: tuple[str, ...], exit_code: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited {exit_code}: {stderr.strip()[:500]}")
        self.argv = argv
        self.exit_code = exit_code
        self.stderr = stderr


class ParseError(SlurmGraphQLError):
    """Output did not have the shape the command was asked to produce."""

    def __init__(self, command: str, line: str, why: str) -> None:
        super().__init__(f"cannot parse {command} output ({why}): {line[:200]!r}")
        self.command = command
        self.line = line


# Order matters: the first pattern that matches a stderr line decides.
_RULES: tuple[tuple[re.Pattern[str], SlurmErrorKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"unable to contact slurm controller", SlurmErrorKind.CONTROLLER_UNREACHABLE),
        (r"could not establish a configuration source", SlurmErrorKind.CONTROLLER_UNREACHABLE),
        (r"socket timed out|zero bytes were transmitted", SlurmErrorKind.CONTROLLER_UNREACHABLE),
        # "reset by peer": a controller that goes away mid-request (24.11's squeue says it when
        # slurmctld stops during the call).
        (
            r"connection refused|connection reset by peer|communication connection failure",
            SlurmErrorKind.CONTROLLER_UNREACHABLE,
        ),
        (
            r"munge|authentication credential|auth_g_|invalid authentication",
            SlurmErrorKind.AUTHENTICATION,
        ),
        (r"invalid job id", SlurmErrorKind.INVALID_JOB_ID),
        (r"accounting storage is disabled", SlurmErrorKind.ACCOUNTING_DISABLED),
        (r"invalid partition|partition \S+ not found", SlurmErrorKind.INVALID_PARTITION),
        (r"invalid node name|node \S+ not found", SlurmErrorKind.INVALID_NODE),
        (
            r"access.?/?permission denied|access denied|not authorized|invalid user id|"
            r"runuser: user \S+ does not exist",
            SlurmErrorKind.ACCESS_DENIED,
        ),
        (
            r"pending execution|not pending|no longer pending|already completing or completed|"
            r"job has (?:already )?finished|job is not running|job is (?:already )?suspended|"
            r"requeue.* not allowed|disabled for this job",
            SlurmErrorKind.INVALID_STATE,
        ),
        (r"command not found|no such file or directory", SlurmErrorKind.NOT_INSTALLED),
    )
)


def classify(stderr: str) -> SlurmErrorKind | None:
    """The kind of the first recognised error line in `stderr`, or None."""
    for line in stderr.splitlines():
        for pattern, kind in _RULES:
            if pattern.search(line):
                return kind
    return None


def slurm_message(stderr: str) -> str:
    """Slurm's own words, without the `squeue: error:` prefixes, for showing to a user."""
    lines = []
    for raw in stderr.splitlines():
        line = re.sub(r"^\s*\S+: (?:error|fatal): ", "", raw.strip())
        line = re.sub(r"^slurm_load_\w+ error: ", "", line)
        if line:
            lines.append(line)
    return "; ".join(dict.fromkeys(lines))[:1000]


def check(result: CommandResult) -> CommandResult:
    """Return `result` when its output can be trusted; raise the classified error otherwise."""
    # scontrol prints some refusals ("Node zz not found") on stdout, so a failed command's
    # stdout is read too; a successful one's stdout is data and is never classified.
    kind = classify(result.stderr)
    if kind is None and result.exit_code != 0:
        kind = classify(result.stdout)
    if result.exit_code == 127:
        kind = SlurmErrorKind.NOT_INSTALLED
    if result.exit_code == 0 and kind not in (
        SlurmErrorKind.CONTROLLER_UNREACHABLE,
        SlurmErrorKind.AUTHENTICATION,
    ):
        return result
    if kind is None:
        raise CommandFailed(result.argv, result.exit_code, result.stderr)
    raise SlurmError(kind, slurm_message(result.stderr) or slurm_message(result.stdout))
