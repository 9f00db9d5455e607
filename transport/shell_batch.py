"""A batch of argv commands as one POSIX shell script, and its framed output decoded. Pure.

Backends that reach the head node through a shell (SSM Run Command, later SSH) send one script
per batch. Each argv is quoted with `join` (shlex's quoting, with every `{` double-quoted), here
and nowhere else; stdin travels inside the script as base64. The commands run concurrently;
their stdout, stderr and exit codes are framed with a random boundary and byte lengths,
gzip-compressed and base64-encoded, so they come back separately and unambiguously in one
printable stream that is usually small enough for the service's inline output.

Every command runs under `env -i` with only the allow-listed variables of the shell the script
runs in (transport/environment.py): the agent's own environment never reaches a command. A
switch of user (`runuser`) is guarded on the head node by `id -u`: a user below `min_uid`, root,
or a user the head node does not know is refused, and reported as such. A command with a lock
runs under `flock` on a file in a directory only the script's user can write.

Frame format, before compression:
    <boundary> <index> <exit code> <stdout bytes> <stderr bytes>\\n<stdout><stderr>   per command
    <boundary> END\\n
The exit code is `R` for a command refused for its user, `U` for one that could not be given its
lock (a head node without flock, or an unsafe lock directory).

Run Command replaces `{{ssm:NAME}}`, `{{ssm-secure:NAME}}` and other `{{…}}` forms in a document's
parameters before the script reaches the head node, so a job named `{{ssm:/prod/api-key}}` would
be named after that secret. `quote` therefore never emits `{{` (a `{` leaves the single quotes as
`"{"`, which the shell puts back together), and `checked_parameters` refuses any parameter that
still holds one, whatever built it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import secrets
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import replace

from transport.base import (
    DEFAULT_MIN_UID,
    EXIT_REFUSED,
    Command,
    CommandResult,
    decode_output,
)
from transport.environment import DEFAULT_PATH, FIXED, INHERITED, passable_names
from transport.errors import TransportError, TransportUnavailable, UnsafeParameter
from transport.locks import ROOT_LOCK_DIR

# Shell functions of every script: refuse a command, guard a switch of user, check the locks.
_PRELUDE = """\
sgq_refuse() { printf 'slurm-graphql: refusing to run as %s: %s\\n' "$2" "$3" >"$d/$1.err"; \
: >"$d/$1.out"; echo R >"$d/$1.rc"; }
sgq_may() {
  sgq_u=$(id -u -- "$2" 2>/dev/null) || { sgq_refuse "$1" "$2" "no such user on the head node"; \
return 1; }
  [ "$sgq_u" -ge "$sgq_min" ] || { sgq_refuse "$1" "$2" \
"UID $sgq_u is below the minimum of $sgq_min"; return 1; }
}
sgq_unavailable() { printf 'slurm-graphql: %s\\n' "$2" >"$d/$1.err"; : >"$d/$1.out"; \
echo U >"$d/$1.rc"; }
"""
# The lock directory: made 0755 by the script's user (root under the SSM agent), then accepted
# only if it is a real directory of that user that nobody else can write.
_LOCKS = f"""\
sgq_me=$(id -u)
if [ "$sgq_me" = 0 ]; then sgq_locks={ROOT_LOCK_DIR}; else \
sgq_locks="${{TMPDIR:-/tmp}}/slurm-graphql-$sgq_me"; fi
mkdir -m 0755 "$sgq_locks" 2>/dev/null
case $(stat -c '%u %F %A' -- "$sgq_locks" 2>/dev/null) in
  "$sgq_me directory "d????-??-?*) ;;
  *) sgq_locks= ;;
esac
command -v flock >/dev/null 2>&1 || sgq_locks=
"""


# What Run Command resolves in a parameter value: `{{` opens every form of reference.
REFERENCE_OPENING = "{{"


def quote(word: str) -> str:
    """`word` as one shell word, like `shlex.quote`, but never containing `{{`.

    shlex puts a word with a `{` in single quotes; each `{` then steps out of them as `"{"`
    (`'a'"{"''"{"'b'` is the shell word `a{{b`), so no two braces are ever adjacent."""
    return shlex.quote(word).replace("{", "'\"{\"'")


def join(argv: Iterable[str]) -> str:
    """The words of `argv`, each quoted with `quote`, separated by spaces."""
    return " ".join(quote(word) for word in argv)


def checked_parameters(parameters: dict[str, list[str]]) -> dict[str, list[str]]:
    """`parameters` unchanged, or UnsafeParameter if a value holds `{{`, which Run Command would
    resolve (a parameter store reference, say) before the head node sees it."""
    for name, values in parameters.items():
        if any(REFERENCE_OPENING in value for value in values):
            raise UnsafeParameter(f"the {name} parameter holds {REFERENCE_OPENING!r}")
    return parameters


def new_boundary() -> str:
    return "sgq" + secrets.token_hex(12)


def environment_words(pass_env: Iterable[str] = ()) -> str:
    """`env -i` and the allow-listed variables, expanded from the script's own environment."""
    words = ["env", "-i", f'"PATH=${{PATH:-{DEFAULT_PATH}}}"']
    words += [quote(f"{name}={value}") for name, value in FIXED.items()]
    names = [name for name in INHERITED if name != "PATH"] + list(passable_names(pass_env))
    words += [f'${{{name}:+"{name}=${name}"}}' for name in names]
    return " ".join(words)


def shell_line(command: Command, environment: str | None = None) -> str:
    """The command as one shell line: the clean environment (`environment_words()` unless
    given), the command's variables, runuser, argv. Everything but `environment` (built by this
    module) is quoted with `quote`."""
    environment = environment_words() if environment is None else environment
    argv: list[str] = [f"{name}={value}" for name, value in command.env.items()]
    if command.user is not None:
        argv += ["runuser", "-u", command.user, "--"]
    argv += command.argv
    return f"{environment} {join(argv)}"


def _command_lines(index: int, command: Command, environment: str) -> str:
    run = _guarded(str(index), command, environment)
    then = command.otherwise
    if then is not None:
        # Only if the command printed nothing and was not refused; else an empty frame "N".
        name = f"{index}o"
        run = (
            f'{run}; if [ ! -s "$d/{index}.out" ] && [ "$(cat "$d/{index}.rc")" != R ]; '
            f"then {_guarded(name, then, environment)}; "
            f'else : >"$d/{name}.out"; : >"$d/{name}.err"; echo N >"$d/{name}.rc"; fi'
        )
    return f"( {run} ) &"


def _guarded(index: str, command: Command, environment: str) -> str:
    """The command's line, writing $d/<index>.{out,err,rc}, under its lock and user guard."""
    if command.stdin is None:
        prefix, feed = "", "</dev/null"
    else:
        encoded = base64.b64encode(command.stdin).decode("ascii")
        prefix, feed = f"printf %s {encoded} | base64 -d | ", ""
    # fd 9 holds the lock; the command itself never inherits it.
    run = (
        f'{prefix}{shell_line(command, environment)} {feed} 9>&- >"$d/{index}.out" '
        f'2>"$d/{index}.err"; echo $? >"$d/{index}.rc"'
    )
    if command.lock is not None:
        lock = f'"$sgq_locks/{command.lock}.lock"'
        run = (
            f'if [ -z "$sgq_locks" ] || [ -L {lock} ] || {{ [ -e {lock} ] && [ ! -f {lock} ]; }}; '
            f"then sgq_unavailable {index} 'the lock directory is unsafe or flock is missing'; "
            f"else exec 9>>{lock}; if flock 9; then {run}; "
            f"else sgq_unavailable {index} 'the lock could not be taken'; fi; fi"
        )
    if command.user is not None:
        run = f"if sgq_may {index} {command.user}; then {run}; fi"
    return run


def build_script(
    commands: Sequence[Command],
    boundary: str,
    *,
    pass_env: Iterable[str] = (),
    min_uid: int = DEFAULT_MIN_UID,
) -> str:
    """A POSIX sh script that runs `commands` concurrently and prints their framed results."""
    if not boundary.isalnum():
        raise ValueError("the boundary must be alphanumeric")
    if not commands:
        raise ValueError("a batch needs at least one command")
    environment = environment_words(pass_env)
    lines = [
        "set -u",
        "d=$(mktemp -d) || exit 70",
        "trap 'rm -rf \"$d\"' EXIT",
        f"sgq_min={max(1, int(min_uid))}",
        _PRELUDE,
    ]
    if any(command.lock is not None for command in commands):
        lines.append(_LOCKS)
    lines += [_command_lines(index, command, environment) for index, command in enumerate(commands)]
    lines.append("wait")
    frame = [
        "{",
        f"for i in {' '.join(_frame_names(commands))}; do",
        f'  printf "%s %s %s %s %s\\n" {boundary} "$i" "$(cat "$d/$i.rc")" '
        '"$(wc -c <"$d/$i.out")" "$(wc -c <"$d/$i.err")"',
        '  cat "$d/$i.out" "$d/$i.err"',
        "done",
        f'printf "%s END\\n" {boundary}',
        "} | gzip -c | base64 -w 0",
    ]
    return "\n".join(lines + frame) + "\n"


def _frame_names(commands: Sequence[Command]) -> list[str]:
    """One frame per command, and one more after each that has an `otherwise`."""
    names: list[str] = []
    for index, command in enumerate(commands):
        names.append(str(index))
        if command.otherwise is not None:
            names.append(f"{index}o")
    return names


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
        result, position = _frame(framed, position, marker, str(index), command)
        if result is None:
            raise TransportError(f"command {index} did not run")
        then = command.otherwise
        if then is not None:
            found, position = _frame(framed, position, marker, f"{index}o", then)
            result = replace(result, otherwise=found)
        results.append(result)
    if framed[position:] != marker + b" END\n":
        raise TransportError("the head node's output ends early: the batch was cut short")
    return results


def _frame(
    framed: bytes, position: int, marker: bytes, name: str, command: Command
) -> tuple[CommandResult | None, int]:
    """The result framed at `position` under `name` (None: an `otherwise` that did not run),
    and where the next frame starts."""
    end_of_header = framed.find(b"\n", position)
    header = framed[position:end_of_header].split()
    if len(header) != 5 or header[0] != marker or header[1] != name.encode():
        raise TransportError(f"malformed frame header for command {name}: {header!r}")
    status = header[2]
    try:
        code = EXIT_REFUSED if status in (b"R", b"U", b"N") else int(status)
        out_length, err_length = (int(value) for value in header[3:])
    except ValueError:
        raise TransportError(f"malformed frame header for command {name}") from None
    start = end_of_header + 1
    stdout = decode_output(framed[start : start + out_length])
    stderr = decode_output(framed[start + out_length : start + out_length + err_length])
    position = start + out_length + err_length
    if status == b"U":
        raise TransportUnavailable(stderr.strip() or "a lock could not be taken")
    if status == b"N":
        return None, position
    return CommandResult(command.argv, stdout, stderr, code, refused=status == b"R"), position
