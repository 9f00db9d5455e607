"""Job listings in a requested order, with keyset cursors that stay right while jobs come and go.

Without an order a listing is by unique job id and its cursor names the last job seen
(resolvers/pagination.py). With `orderBy` the cursor carries the last job's sort values and job
id, and the next page starts after that key wherever it now falls: a job that ends meanwhile
shifts nothing, a new one shows up where the order puts it. Ties are broken by job id, so the
order is total and no job is skipped or repeated.

None values (a pending job's end time, say) sort after every value in both directions, as SQL's
NULLS LAST. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resolvers.ids import BadUserInput
from resolvers.pagination import Page
from resolvers.slurm.jobs import JobRecord, JobRow

_PREFIX = "ord:"
MAX_CURSOR = 2048  # a real one is under 300 characters


class OrderField(enum.Enum):
    ID = "ID"
    SUBMIT_TIME = "SUBMIT_TIME"
    START_TIME = "START_TIME"
    PRIORITY = "PRIORITY"
    END_TIME = "END_TIME"
    NAME = "NAME"
    USER = "USER"


def _value(field: OrderField, job_id: int, record: JobRecord | None) -> int | str | None:
    if field is OrderField.ID or record is None:
        return job_id
    if field is OrderField.SUBMIT_TIME:
        return record.submit_time
    if field is OrderField.START_TIME:
        return record.start_time
    if field is OrderField.END_TIME:
        return record.end_time
    if field is OrderField.PRIORITY:
        return record.priority
    if field is OrderField.NAME:
        return record.name
    return record.user


@dataclass(frozen=True)
class Ordering:
    """(field, descending) pairs, most significant first; job id breaks ties."""

    fields: tuple[tuple[OrderField, bool], ...]

    def __post_init__(self) -> None:
        names = [field for field, _ in self.fields]
        if len(set(names)) != len(names):
            raise BadUserInput("orderBy names a field more than once")

    @property
    def by_id_only(self) -> bool:
        """The default order (job id ascending), with the default cursors."""
        return not self.fields or self.fields == ((OrderField.ID, False),)

    @property
    def signature(self) -> str:
        return ",".join(f"{f.value}{'-' if desc else '+'}" for f, desc in self.fields)

    def values(self, row: JobRow) -> list[int | str | None]:
        needs_record = any(f is not OrderField.ID for f, _ in self.fields)
        record = row.fields() if needs_record else None
        return [_value(f, row.job_id, record) for f, _ in self.fields]

    def key(self, values: Sequence[int | str | None], job_id: int) -> tuple[Any, ...]:
        """A comparable key: each value flipped for DESC, None last, then the job id (in the
        direction of ID if it is ordered by, else ascending)."""
        parts: list[Any] = []
        for (_, descending), value in zip(self.fields, values, strict=True):
            parts.append(_part(value, descending))
        id_descending = next((d for f, d in self.fields if f is OrderField.ID), False)
        parts.append(-job_id if id_descending else job_id)
        return tuple(parts)

    def sort(self, rows: Sequence[JobRow]) -> list[tuple[tuple[Any, ...], JobRow]]:
        if len(self.fields) == 1 and self.fields[0][0] is OrderField.ID:
            # The dashboard's default (newest first): the key `key` makes, without reading any
            # field of the row; rows come in job id order, which the sort then finds at once.
            sign = -1 if self.fields[0][1] else 1
            keyed = [(((0, sign * row.job_id), sign * row.job_id), row) for row in rows]
            keyed.sort(key=lambda pair: pair[0])
            return keyed
        keyed = [(self.key(self.values(row), row.job_id), row) for row in rows]
        keyed.sort(key=lambda pair: pair[0])
        return keyed

    def cursor(self, row: JobRow) -> str:
        text = json.dumps([self.signature, self.values(row), row.job_id], separators=(",", ":"))
        return base64.urlsafe_b64encode((_PREFIX + text).encode()).decode()

    def decode(self, cursor: str) -> tuple[Any, ...]:
        """The key a cursor of this ordering names; BadUserInput if it is not one (a value of
        the wrong type included: it could not be compared with the jobs' own)."""
        values, job_id = _decode(cursor, self.signature, len(self.fields))
        for (field, _), value in zip(self.fields, values, strict=True):
            text = field in (OrderField.NAME, OrderField.USER)
            if value is not None and isinstance(value, str) != text:
                raise _bad(cursor)
        return self.key(values, job_id)


def _part(value: int | str | None, descending: bool) -> tuple[Any, ...]:
    if value is None:
        return (1,)  # after every value, in both directions
    if isinstance(value, int):
        return (0, -value if descending else value)
    if not descending:
        return (0, value)
    # Reversed text order: each code point negated, then a terminator above all of them, so a
    # prefix ("a") comes after what extends it ("ab") as descending order wants.
    return (0, (*(-ord(c) for c in value), 1))


def _bad(cursor: str) -> BadUserInput:
    return BadUserInput(f"{cursor[:40]!r} is not a cursor this API issued for this orderBy")


def _decode(cursor: str, signature: str, count: int) -> tuple[list[int | str | None], int]:
    if len(cursor) > MAX_CURSOR:
        raise _bad(cursor)
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        if not text.startswith(_PREFIX):
            raise _bad(cursor)
        found = json.loads(text[len(_PREFIX) :])
    except (binascii.Error, UnicodeError, ValueError):
        raise _bad(cursor) from None
    if (
        not isinstance(found, list)
        or len(found) != 3
        or found[0] != signature
        or not isinstance(found[1], list)
        or len(found[1]) != count
        or not all(v is None or isinstance(v, int | str) for v in found[1])
        or any(isinstance(v, bool) for v in found[1])
        or not isinstance(found[2], int)
        or isinstance(found[2], bool)
    ):
        raise _bad(cursor)
    return found[1], found[2]


def is_ordered_cursor(cursor: str) -> bool:
    """Whether `cursor` is of the ordered kind (checked against its orderBy when used)."""
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).startswith(_PREFIX.encode())
    except (binascii.Error, UnicodeError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class OrderedPage:
    page: Page
    cursors: tuple[str, ...]


def paginate_ordered(
    rows: Sequence[JobRow], ordering: Ordering, first: int, after: str | None
) -> OrderedPage:
    """The `first` jobs after the cursor in `ordering`, with each one's cursor."""
    keyed = ordering.sort(rows)
    start = 0
    if after is not None:
        last_seen = ordering.decode(after)
        start = bisect_right(keyed, last_seen, key=lambda pair: pair[0])
    window = [row for _, row in keyed[start : start + first]]
    page = Page(
        jobs=window,
        total_count=len(keyed),
        has_next_page=start + first < len(keyed),
        has_previous_page=start > 0,
    )
    return OrderedPage(page, tuple(ordering.cursor(row) for row in window))
