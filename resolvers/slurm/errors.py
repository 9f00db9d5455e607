"""Slurm's failures, classified in one place.

Slurm reports most failures as a line on stderr and a non-zero exit, but not all: some commands exit
0 after printing an error. Every command result goes through `check` before its output is parsed.

Slurm's words may name the cluster's internals: `sacct` with slurmdbd down says "failed to open
persistent connection to host:head-node:6819", a config error names its file. `slurm_message`, the
only text of Slurm's that reaches a client, hides host:port pairs, addresses and absolute paths;
`SlurmError.detail` keeps Slurm's raw text for the server's log.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

from slurm_graphql.errors import SlurmGraphQLError

if TYPE_CHECKING:
    from transport.base import CommandResult


class SlurmErrorKind(enum.Enum):
    CONTROLLER_UNREACHABLE = "controller unreachable"
    ACCOUNTING_UNREACHABLE = "accounting (slurmdbd) unreachable"
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
    """Slurm refused or failed; `message` is Slurm's own words with internals hidden (safe to
    show a user); `detail`, also its str(), is Slurm's raw text, for the server's log only."""

    def __init__(self, kind: SlurmErrorKind, message: str, detail: str = "") -> None:
        said = detail or message
        super().__init__(f"{kind.value}: {said}" if said else kind.value)
        self.kind = kind
        self.message = message
        self.detail = detail or message


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
        # slurmdbd down, before "connection refused" (which its lines end with): sacct and
        # sacctmgr say "failed to open persistent connection to host:...", "Sending PersistInit
        # msg", "Problem talking to the database".
        (
            r"persistent connection|persistinit|problem talking to the database",
            SlurmErrorKind.ACCOUNTING_UNREACHABLE,
        ),
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


# What names the cluster's insides in Slurm's words, and what stands for it in a client's message.
# An AWS ARN (the head node's role, in the AWS CLI's refusals), a host:port pair (Slurm's
# "host:NAME:PORT" too; the name starts with a letter so that times, "1:30:00", stay), an IPv4
# address, an absolute path (not "N/A" or "Access/permission").
_INTERNALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\barn:aws[\w-]*:[^\s\"',;()]+"), "<arn>"),
    (re.compile(r"\bhost:[^\s,;()]*[^\s,;():]"), "<host>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"\b[A-Za-z][\w.-]*:\d{1,5}\b"), "<host>"),
    (re.compile(r"\[[0-9A-Fa-f:]+\](?::\d+)?"), "<address>"),
    (re.compile(r"(?<![\w.~-])/[\w.@+~-]+(?:/[\w.@+~-]*)*"), "<path>"),
)


def without_internals(text: str) -> str:
    """`text` with host names and ports, addresses and absolute paths replaced by placeholders."""
    for pattern, placeholder in _INTERNALS:
        text = pattern.sub(placeholder, text)
    return text


def _said(stderr: str) -> str:
    lines = []
    for raw in stderr.splitlines():
        line = re.sub(r"^\s*\S+: (?:error|fatal): ", "", raw.strip())
        line = re.sub(r"^slurm_load_\w+ error: ", "", line)
        if line:
            lines.append(line)
    return "; ".join(dict.fromkeys(lines))[:1000]


def slurm_message(stderr: str) -> str:
    """Slurm's own words, without the `squeue: error:` prefixes and without internals (hosts,
    ports, paths), for showing to a user."""
    return without_internals(_said(stderr))


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
        SlurmErrorKind.ACCOUNTING_UNREACHABLE,
        SlurmErrorKind.AUTHENTICATION,
    ):
        return result
    if kind is None:
        raise CommandFailed(result.argv, result.exit_code, result.stderr)
    said = _said(result.stderr) or _said(result.stdout)
    raise SlurmError(kind, without_internals(said), said)


# Failures of the cluster, not of the request: the API's SLURM_UNAVAILABLE, which clients retry.
UNAVAILABLE = frozenset(
    {
        SlurmErrorKind.CONTROLLER_UNREACHABLE,
        SlurmErrorKind.ACCOUNTING_UNREACHABLE,
        SlurmErrorKind.AUTHENTICATION,
        SlurmErrorKind.NOT_INSTALLED,
    }
)
