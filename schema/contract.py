"""The schema as a contract: `schema.graphql` at the repository root, and its breaking changes.

Frontends generate code from the committed `schema.graphql` (`make schema` writes it; a test fails
when it is stale). `make check` compares it with the schema of the last release tag (graphql-core's
`find_breaking_changes`) and fails on any break the CHANGELOG's Unreleased section does not name:
each break is acknowledged by writing its coordinate in backticks there (`Job.id`, `Node`).

Until the first release tag exists, the baseline is `schema.graphql` as first committed: the
contract since the project has had one. Pure: scripts/schema-contract reads git and the files.
"""

from __future__ import annotations

import re

from graphql import build_schema as build_from_sdl
from graphql import find_breaking_changes

_DOTTED = re.compile(r"\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b")
_LEADING = re.compile(r"^(?:Field |Type )?([A-Za-z_]\w*)")


def current_sdl() -> str:
    """The SDL of the schema this code serves, as `schema.graphql` holds it."""
    from schema import build_schema

    return build_schema().as_str() + "\n"


def breaking_changes(old_sdl: str, new_sdl: str) -> list[tuple[str, str]]:
    """(coordinate, description) of each change of `new_sdl` that breaks a client of
    `old_sdl`; the coordinate is the type or `Type.field` it is about."""
    found = []
    for change in find_breaking_changes(build_from_sdl(old_sdl), build_from_sdl(new_sdl)):
        text = change.description
        match = _DOTTED.search(text) or _LEADING.search(text)
        found.append((match.group(1) if match else text, text))
    return found


def unreleased(changelog: str) -> str:
    """The CHANGELOG's Unreleased section (empty if it has none)."""
    match = re.search(r"^## Unreleased\n(.*?)(?=^## |\Z)", changelog, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def unacknowledged(old_sdl: str, new_sdl: str, changelog: str) -> list[str]:
    """Descriptions of the breaks whose coordinate the Unreleased section does not name."""
    section = unreleased(changelog)
    return [
        f"{description} (name `{coordinate}` in CHANGELOG.md's Unreleased section)"
        for coordinate, description in breaking_changes(old_sdl, new_sdl)
        if f"`{coordinate}`" not in section
    ]
