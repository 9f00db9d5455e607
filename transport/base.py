"""The transport contract: a batch of argv commands in, their results out, one round trip.

Like httpx's `BaseTransport`, the whole interface is one method. A transport knows nothing about
Slurm; it runs programs on the head node. Commands are argv tuples and never shell strings: only a
backend that must go through a shell (ssm, ssh) quotes them, at its own edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Command:
    """One program to run: argv, extra environment, optional stdin and the Unix user to run as."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(arg, str) for arg in self.argv):
            raise ValueError("a command needs a non-empty argv of strings")
        if any("\x00" in arg for arg in self.argv):
            raise ValueError("argv must not contain NUL bytes")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command produced. Output is decoded as UTF-8; undecodable bytes become U+FFFD."""

    argv: tuple[str, ...]
    stdout: str
    stderr: str
    exit_code: int

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


def decode_output(data: bytes) -> str:
    """Decode program output the same way in every backend: UTF-8, bad bytes replaced."""
    return data.decode("utf-8", errors="replace")
