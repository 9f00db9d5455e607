"""The transport contract: a batch of argv commands in, their results out, one round trip.

Like httpx's `BaseTransport`, the whole interface is one method. A transport knows nothing about
Slurm; it runs programs on the head node. Commands are argv tuples and never shell strings: only a
backend that must go through a shell (ssm, ssh) quotes them, at its own edge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs

from transport.environment import check_extra

# The portable POSIX user name rule; also what the shell backends may pass to runuser unquoted.
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
# A lock is a file name in the head node's lock directory.
LOCK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
# The smallest UID a transport switches to by default: below are root and system accounts.
DEFAULT_MIN_UID = 1000
# The exit code of a refused command, as a shell reports a program it may not execute.
EXIT_REFUSED = 126
# What an interactive request may say. A REPL reads one command per line: a newline, or any
# byte a line editor acts on, would smuggle in a second command (`scontrol` as the server's
# user may `update` or `shutdown`). So only what `show <entity> [<id or name>]` needs (a job id
# such as 42_[1-5%2] or 42+1).
INTERACTIVE_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ,.:=+%\[\]-]{0,255}\Z")


@dataclass(frozen=True, slots=True)
class Interactive:
    """How a long-lived interactive program (a REPL such as `scontrol`) can answer a command
    without starting a process, on a backend that keeps such programs (local://); every other
    backend runs `Command.argv` and ignores this.

    `program` is started once, as the transport's own user with the command's environment, and
    asked many times. Each request writes `line`, then `marker` with a fresh random token in
    place of `{}`: a command that prints its argument alone on a line, asking nothing of anyone.
    The answer is what the program prints between its echo of `line` (`prompt` + line, as
    readline echoes input that is not a terminal) and its echo of the marker, followed by the
    token's line. The token is 128 random bits per request, so no value inside an answer (a
    node's reason, a job's name) can end it early. The answer must be what `argv` would print:
    the caller chooses `program` and `line` so that it is, or gives `translate`.

    `translate`, if given, turns the program's answer (its stdout) into what `argv` would print,
    or returns None when it cannot prove the two the same; the command then runs as a process,
    as if no session were kept. It is pure and never raises: the caller's knowledge of both
    programs' output, which the transport does not have.
    """

    program: tuple[str, ...]
    line: str
    marker: str
    prompt: str
    translate: Callable[[str], str | None] | None = None

    def __post_init__(self) -> None:
        if not self.program or not all(isinstance(a, str) and a for a in self.program):
            raise ValueError("an interactive program needs a non-empty argv of strings")
        if any("\x00" in arg for arg in self.program):
            raise ValueError("argv must not contain NUL bytes")
        if self.marker.count("{}") != 1:
            raise ValueError("the marker needs one {} for its token")
        for text in (self.line, self.marker.replace("{}", "token")):
            if not INTERACTIVE_LINE.fullmatch(text):
                raise ValueError(f"{text[:40]!r} is not an interactive request line")
        if not self.prompt or any(c in self.prompt for c in "\r\n\x00"):
            raise ValueError("the prompt is a non-empty text without line ends")


@dataclass(frozen=True, slots=True)
class Command:
    """One program to run: argv, extra environment, optional stdin, the Unix user to run as, and
    an optional lock.

    `user` None runs as the transport's own user; any other user is switched to with `runuser`,
    and only if its UID on the head node is at least the transport's `min_uid` (never root).
    `lock` names an exclusive lock the transport holds, as its own user, for the whole run of the
    command: commands with the same lock never overlap on one head node, whatever the backend.
    The lock file lives in a directory only the transport's user can write, so a user cannot
    pre-create it (as a FIFO, say) and stall everyone.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    user: str | None = None
    lock: str | None = None
    # Run next, in the same round trip, only if this command printed nothing on stdout (and
    # was not refused): job(id) asks sacct only for a job squeue no longer holds. It runs as
    # its own user, under the same floor, with no stdin, lock or `otherwise` of its own.
    otherwise: Command | None = None
    # How an interactive program already running may answer instead (local:// only).
    interactive: Interactive | None = None

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(arg, str) for arg in self.argv):
            raise ValueError("a command needs a non-empty argv of strings")
        if any("\x00" in arg for arg in self.argv):
            raise ValueError("argv must not contain NUL bytes")
        if self.user is not None and not USER_NAME.match(self.user):
            raise ValueError(f"{self.user[:40]!r} is not a valid user name")
        if self.lock is not None and not LOCK_NAME.match(self.lock):
            raise ValueError(f"{self.lock[:40]!r} is not a valid lock name")
        then = self.otherwise
        if then is not None and (then.stdin is not None or then.lock or then.otherwise):
            raise ValueError("`otherwise` takes no stdin, lock or `otherwise` of its own")
        if self.interactive is not None and (self.user or self.stdin is not None or self.lock):
            # A session is one process of the transport's own user, shared by every request.
            raise ValueError(
                "an interactive command runs as the transport's user, no stdin or lock"
            )
        check_extra(self.env)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command produced. Output is decoded as UTF-8; undecodable bytes become U+FFFD.

    `refused` is True when the transport did not run the command at all because it may not act
    as `Command.user` (a UID below the floor, root, or no such user); `stderr` says why.
    """

    argv: tuple[str, ...]
    stdout: str
    stderr: str
    exit_code: int
    refused: bool = False
    # The result of Command.otherwise, when it ran.
    otherwise: CommandResult | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Transport(Protocol):
    """Runs a batch of commands on one head node in a single round trip."""

    @property
    def url(self) -> str:
        """The URL this transport was opened with, credentials removed."""
        ...

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        """Run every command and return their results in the same order."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds; it is not used afterwards."""
        ...


def refused_result(command: Command, reason: str) -> CommandResult:
    """The result of a command the transport would not run as its user."""
    message = f"slurm-graphql: refusing to run as {command.user}: {reason}\n"
    return CommandResult(command.argv, "", message, EXIT_REFUSED, refused=True)


def decode_output(data: bytes) -> str:
    """Decode program output the same way in every backend: UTF-8, bad bytes replaced."""
    return data.decode("utf-8", errors="replace")


def url_options(query: str, allowed: set[str]) -> dict[str, str]:
    """A transport URL's query string as options; the last value wins, unknown names fail.

    It lives with the contract, not the registry, so a backend parsing its own URL needs nothing
    from the module that imports it."""
    options = {key: values[-1] for key, values in parse_qs(query, strict_parsing=False).items()}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown transport option(s): {', '.join(sorted(unknown))}")
    return options
