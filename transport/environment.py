"""The environment every command runs in: a short allow-list, never the server's own. Pure.

A command must not see what the process that started it holds (token maps, AWS keys, JWT
secrets): a job's output path of `/proc/self/environ`, an `env` in a job script, or any program
that prints its environment would hand it to a user. So each backend builds a command's
environment from scratch: what Slurm and the shell need, taken from the environment the backend
runs in (`PATH`, `SLURM_CONF`, `TZ`), a fixed UTF-8 locale, the variables an operator names with
`?pass_env=` (checked here: credentials and the service's own settings can never be passed), and
the command's own `Command.env`. `runuser` adds `HOME`, `USER`, `LOGNAME` and `SHELL` of the
target user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Where Slurm and coreutils live when the environment names no PATH (a bare systemd unit).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Taken from the backend's environment when set: the binaries, the cluster, the time zone.
INHERITED = ("PATH", "SLURM_CONF", "TZ")
# Set on every command, so output (and Slurm's parsing of it) does not depend on the host.
FIXED = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Never passed, whatever the configuration says: secrets, and what changes how programs load.
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE")
_FORBIDDEN_PREFIXES = ("SLURM_GRAPHQL_", "AWS_CONTAINER_", "LD_", "BASH_FUNC_")
_FORBIDDEN = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "BASH_ENV",
        "ENV",
        "IFS",
        "SHELLOPTS",
        "PS4",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
    }
)


def passable_names(names: Iterable[str]) -> tuple[str, ...]:
    """Validated names for `?pass_env=`: raises ValueError for a name that may carry a secret."""
    checked: list[str] = []
    for name in names:
        if not ENV_NAME.match(name):
            raise ValueError(f"{name[:40]!r} is not an environment variable name")
        upper = name.upper()
        if (
            upper in _FORBIDDEN
            or upper.startswith(_FORBIDDEN_PREFIXES)
            or any(word in upper for word in _SECRET_WORDS)
        ):
            raise ValueError(
                f"{name} may hold a secret or change how programs run and is never passed to "
                "commands; give users their own credentials (~/.aws) instead"
            )
        if name not in checked and name not in INHERITED and name not in FIXED:
            checked.append(name)
    return tuple(checked)


def parse_pass_env(text: str | None) -> tuple[str, ...]:
    """`?pass_env=A,B` as validated names."""
    if not text:
        return ()
    return passable_names(name.strip() for name in text.split(",") if name.strip())


def command_environ(source: Mapping[str, str], passed: Iterable[str] = ()) -> dict[str, str]:
    """The environment of every command, built from `source` (the backend's own)."""
    environ = {name: source[name] for name in INHERITED if source.get(name)}
    environ.setdefault("PATH", DEFAULT_PATH)
    environ.update(FIXED)
    for name in passable_names(passed):
        if name in source:
            environ[name] = source[name]
    return environ


def check_extra(env: Mapping[str, str]) -> None:
    """A command's own variables: valid names only (the value is the caller's business)."""
    bad = [name for name in env if not ENV_NAME.match(name)]
    if bad:
        raise ValueError(f"invalid environment variable name(s): {bad}")
