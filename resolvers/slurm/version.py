"""The Slurm version from `scontrol --version`: `slurm 22.05.8` (`slurm-wlm 22.05.8` on Debian)."""

from __future__ import annotations

import re

from resolvers.slurm.errors import ParseError
from resolvers.slurm.interactive import scontrol_session
from transport.base import Command

_VERSION = re.compile(r"\b(\d+\.\d+\.\d+[\w.-]*)")


def version_command() -> Command:
    return Command(("scontrol", "--version"), interactive=scontrol_session((), "version"))


def parse_version(text: str) -> str:
    match = _VERSION.search(text)
    if match is None:
        raise ParseError("scontrol --version", text, "no version number")
    return match.group(1)
