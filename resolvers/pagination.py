"""Relay-style cursors over jobs ordered by Slurm's unique job id.

A cursor names the last job seen, not a position, so a page stays correct when jobs finish or
arrive between two requests.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.ids import BadUserInput
from resolvers.slurm.jobs import JobRow
from resolvers.slurm.values import is_decimal

_PREFIX = "job:"


def encode_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadUserInput(f"{cursor[:40]!r} is not a cursor this API issued") from None
    if not text.startswith(_PREFIX) or not is_decimal(text[len(_PREFIX) :]):
        raise BadUserInput(f"{cursor[:40]!r} is not a cursor this API issued")
    return int(text[len(_PREFIX) :])


@dataclass(frozen=True, slots=True)
class Page:
    jobs: Sequence[JobRow]
    total_count: int
    has_next_page: bool
    has_previous_page: bool


def paginate(jobs: Sequence[JobRow], first: int, after: str | None) -> Page:
    """The `first` jobs after the cursor; `jobs` must be ordered by job id."""
    start = 0
    if after is not None:
        last_seen = decode_cursor(after)
        start = bisect_right(jobs, last_seen, key=lambda job: job.job_id)
    window = jobs[start : start + first]
    return Page(
        jobs=window,
        total_count=len(jobs),
        has_next_page=start + first < len(jobs),
        has_previous_page=start > 0,
    )
