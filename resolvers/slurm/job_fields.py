"""Values a client gives for a job, validated the same way for sbatch and for scontrol. Pure.

Every value ends up as one argv element (`--job-name=<value>`, `Name=<value>`), never in a
shell, so it cannot run anything. Validation is still strict where Slurm has a grammar (names
of partitions and accounts, dependencies), so that a mistake is reported by field before a round
trip, and free text (names, comments, paths) is refused only for bytes Slurm cannot store (NUL)
or that would break a path (control characters).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.ids import is_unicode_text, validate_job_id
from slurm_graphql.errors import SlurmGraphQLError


class InvalidSubmission(SlurmGraphQLError, ValueError):
    """One option is wrong; `field` names it as the client wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# The idempotency key is stored in the job's comment, behind this marker, so that it lives with
# the job in Slurm and survives a server restart.
KEY_MARKER = "slurm-graphql:cmid="
KEY_END = ";"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}\Z")
MAX_TEXT = 1024
MAX_PATH = 4096
MAX_COUNT = 1_000_000
MAX_MINUTES = 366 * 24 * 60

DEPENDENCY_TYPES = (
    "after",
    "afterany",
    "afterok",
    "afternotok",
    "aftercorr",
    "afterburstbuffer",
    "singleton",
)


@dataclass(frozen=True)
class Dependency:
    type: str  # one of DEPENDENCY_TYPES
    job_ids: tuple[str, ...] = ()


def text_value(field: str, value: str, limit: int = MAX_TEXT) -> str:
    if "\x00" in value:
        raise InvalidSubmission(field, "must not contain NUL bytes")
    if not is_unicode_text(value):
        raise InvalidSubmission(field, "is not valid Unicode text (it holds a lone surrogate)")
    if len(value) > limit:
        raise InvalidSubmission(field, f"is longer than {limit} characters")
    return value


def path_value(field: str, value: str) -> str:
    text_value(field, value, MAX_PATH)
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidSubmission(field, "must be a non-empty path without control characters")
    return value


def matching(field: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    # fullmatch: a pattern ending in `$` would also accept the value followed by a newline.
    if not pattern.fullmatch(value):
        raise InvalidSubmission(field, f"{value[:60]!r} is not {what}")
    return value


def count_value(field: str, value: int, maximum: int = MAX_COUNT) -> int:
    if not 1 <= value <= maximum:
        raise InvalidSubmission(field, f"must be between 1 and {maximum}, got {value}")
    return value


def job_name(value: str) -> str:
    if not value:
        raise InvalidSubmission("name", "must not be empty")
    return text_value("name", value)


def comment_value(value: str) -> str:
    """A client's comment: free text, but never starting with the key marker, so that no
    comment a client writes can pass for an idempotency key."""
    if value.startswith(KEY_MARKER):
        raise InvalidSubmission("comment", f"must not start with {KEY_MARKER!r} (reserved)")
    return text_value("comment", value)


def slurm_names(*given: tuple[str, str, str | None]) -> list[str]:
    """`KEY=value` for each given name of a partition, account, QOS or reservation."""
    return [
        f"{key}={matching(field_name, value, _SLURM_NAME, 'a name')}"
        for key, field_name, value in given
        if value is not None
    ]


def validate_key(value: str) -> str:
    return matching("clientMutationId", value, _KEY, "1-64 letters, digits, '_' or '-'")


def comment_with_key(comment: str | None, key: str | None) -> str | None:
    if key is None:
        return comment
    return f"{KEY_MARKER}{key}{KEY_END}{comment or ''}"


def split_comment(stored: str | None) -> tuple[str | None, str | None]:
    """(the client's comment, the idempotency key) from the comment Slurm stores."""
    if stored is None or not stored.startswith(KEY_MARKER):
        return stored, None
    key, sep, comment = stored[len(KEY_MARKER) :].partition(KEY_END)
    if not sep or not _KEY.match(key):
        return stored, None
    return comment or None, key


def dependency_option(dependencies: Sequence[Dependency], any_of: bool) -> str:
    parts = []
    for index, dependency in enumerate(dependencies):
        where = f"dependencies[{index}]"
        if dependency.type not in DEPENDENCY_TYPES:
            raise InvalidSubmission(where, f"unknown dependency type {dependency.type!r}")
        if dependency.type == "singleton":
            if dependency.job_ids:
                raise InvalidSubmission(where, "singleton takes no job ids")
            parts.append("singleton")
            continue
        if not dependency.job_ids:
            raise InvalidSubmission(where, "needs at least one job id")
        for job_id in dependency.job_ids:
            if "+" in job_id or "[" in job_id:
                raise InvalidSubmission(where, f"{job_id!r} is not a job or array task id")
            try:
                validate_job_id(job_id)
            except ValueError:
                raise InvalidSubmission(where, f"{job_id[:40]!r} is not a job id") from None
        parts.append(":".join((dependency.type, *dependency.job_ids)))
    return ("?" if any_of else ",").join(parts)
