"""What the tests need from the Dockerfile: its final stage's ENV, ENTRYPOINT, CMD, HEALTHCHECK
and COPY sources. Only the forms this project's Dockerfile uses are understood (exec-form JSON
arrays, `ENV key=value`), and anything else fails loudly rather than being guessed at."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)  # build-context sources of COPY


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            pairs.append((name.upper(), rest.strip()))
    return pairs


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for name, rest in instructions(path.read_text()):
        if name == "FROM":
            found.append(Stage())
        elif not found:
            continue
        elif name == "ENV":
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {pair}: only key=value is understood"
                found[-1].env[key] = value
        elif name == "ENTRYPOINT":
            found[-1].entrypoint = _exec_form(rest)
        elif name == "CMD":
            found[-1].cmd = _exec_form(rest)
        elif name == "HEALTHCHECK":
            _, _, command = rest.partition(" CMD ")
            found[-1].healthcheck = _exec_form(command)
        elif name == "COPY" and not rest.startswith("--from="):
            found[-1].copied += shlex.split(rest)[:-1]
    return found
