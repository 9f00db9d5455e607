"""A batch of argv commands as one POSIX shell script, and its framed output decoded. Pure.

Backends that reach the head node through a shell (SSM Run Command, later SSH) send one script
per batch. Each argv is quoted with `shlex.join`, here and nowhere else; stdin travels inside the
script as base64. The commands run concurrently; their stdout, stderr and exit codes are framed
with a random boundary and byte lengths, gzip-compressed and base64-encoded, so they come back
separately and unambiguously in one printable stream that is usually small enough for the
service's inline output.

Frame format, before compression:
    <boundary> <index> <exit code> <stdout bytes> <stderr bytes>\\n<stdout><stderr>   per command
    <boundary> END\\n
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import secrets
import shlex
from collections.abc import Sequence

from transport.base import Command, CommandResult, decode_output
from transport.errors import TransportError

_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def new_boundary() -> str:
    return "sgq" + secrets.token_hex(12)


def shell_line(command: Command) -> str:
    """The command as one shell-quoted line: runuser (as root), env, argv."""
    argv: list[str] = []
    if command.user is not None:
        if not _USER.match(command.user):
            raise ValueError(f"{command.user!r} is not a valid user name")
        argv += ["runuser", "-u", command.user, "--"]
    if command.env:
        bad = [name for name in command.env if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid environment variable name(s): {bad}")
        argv += ["env", *(f"{name}={value}" for name, value in command.env.items())]
    argv += command.argv
    return shlex.join(argv)


def build_script(commands: Sequence[Command], boundary: str) -> str:
    """A POSIX sh script that runs `commands` concurrently and prints their framed results."""
    if not boundary.isalnum():
        raise ValueError("the boundary must be alphanumeric")
    if not commands:
        raise ValueError("a batch needs at least one command")
    lines = [
        "set -u",
        "d=$(mktemp -d) || exit 70",
        "trap 'rm -rf \"$d\"' EXIT",
    ]
    for index, command in enumerate(commands):
        if command.stdin is None:
            feed = "</dev/null"
            prefix = ""
        else:
            encoded = base64.b64encode(command.stdin).decode("ascii")
            prefix = f"printf %s {encoded} | base64 -d | "
            feed = ""
        lines.append(
            f'( {prefix}{shell_line(command)} {feed} >"$d/{index}.out" 2>"$d/{index}.err"; '
            f'echo $? >"$d/{index}.rc" ) &'
        )
    lines.append("wait")
    frame = [
        "{",
        f"for i in {' '.join(str(i) for i in range(len(commands)))}; do",
        f'  printf "%s %s %s %s %s\\n" {boundary} "$i" "$(cat "$d/$i.rc")" '
        '"$(wc -c <"$d/$i.out")" "$(wc -c <"$d/$i.err")"',
        '  cat "$d/$i.out" "$d/$i.err"',
        "done",
        f'printf "%s END\\n" {boundary}',
        "} | gzip -c | base64 -w 0",
    ]
    return "\n".join(lines + frame) + "\n"


def parse_batch_output(
    printed: str, commands: Sequence[Command], boundary: str
) -> list[CommandResult]:
    """The results of `commands` from what `build_script(commands, boundary)` printed."""
    try:
        framed = gzip.decompress(base64.b64decode("".join(printed.split()), validate=True))
    except (binascii.Error, ValueError, OSError, EOFError) as exc:
        raise TransportError(f"the head node's output is not a framed batch: {exc}") from exc
    results: list[CommandResult] = []
    position = 0
    marker = boundary.encode()
    for index, command in enumerate(commands):
        end_of_header = framed.find(b"\n", position)
        header = framed[position:end_of_header].split()
        if len(header) != 5 or header[0] != marker or header[1] != str(index).encode():
            raise TransportError(f"malformed frame header for command {index}: {header!r}")
        try:
            code, out_length, err_length = (int(value) for value in header[2:])
        except ValueError:
            raise TransportError(f"malformed frame header for command {index}") from None
        start = end_of_header + 1
        stdout = framed[start : start + out_length]
        stderr = framed[start + out_length : start + out_length + err_length]
        position = start + out_length + err_length
        results.append(
            CommandResult(command.argv, decode_output(stdout), decode_output(stderr), code)
        )
    if framed[position:] != marker + b" END\n":
        raise TransportError("the head node's output ends early: the batch was cut short")
    return results
