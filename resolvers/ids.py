"""Validation of user-supplied identifiers, before anything reaches a command line."""

from __future__ import annotations

import re

from slurm_graphql.errors import SlurmGraphQLError

# 42, 42_7, 42_[3-9%2], 42+1: Slurm's display forms of a job id.
# ASCII: \d would also take other scripts' digits, which int() reads and Slurm does not.
_JOB_ID = re.compile(r"^\d{1,10}(?:_(?:\d{1,10}|\[[\d,\-%]{1,64}\])|\+\d{1,5})?\Z", re.ASCII)
MAX_NAME = 256


class BadUserInput(SlurmGraphQLError, ValueError):
    """The request itself is wrong; reported with code BAD_USER_INPUT, nothing is run."""


def validate_job_id(value: str) -> str:
    if not _JOB_ID.match(value):
        raise BadUserInput(f"{value!r} is not a Slurm job id (expected e.g. 42, 42_3, 42_[1-9])")
    return value


def validate_name(kind: str, value: str) -> str:
    """Partition, node, user and job names: any text, but bounded and without control bytes."""
    if len(value) > MAX_NAME or any(ord(c) < 32 for c in value) or not is_unicode_text(value):
        raise BadUserInput(f"{value[:40]!r} is not a valid {kind} name")
    return value


def is_unicode_text(value: str) -> bool:
    """False for text holding lone surrogates (JSON's `\\ud800` escapes decode to them), which no
    command line, file name or Slurm field can carry."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
