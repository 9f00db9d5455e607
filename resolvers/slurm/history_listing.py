"""A window's listing: each job's id, Submit and End alone, to choose a page of history. Pure.

A first or counted page of jobHistory lists the whole window (sacct has no LIMIT) and then
reads its page's jobs in full by id (resolvers/history.py). The listing's cost is slurmdbd's:
sacct asks for the window's job records whatever columns it prints (about 250 ms for 21,000
jobs here, 130-200 ms of them MariaDB's own query), and then ours, splitting its output. So it
prints only what choosing a page needs, in the fewest bytes:

- JobIDRaw (the order), Submit and End (the client's exact time bounds, `_within`; the earliest
  Submit of a requeued job's records is read again from the page's full rows, for the cursor).
  Not UID: the audience is checked on the page's full rows, and sacct was asked for the
  audience's jobs alone. Not Eligible: the window's own query tests it (only a `--jobs` query
  does not, and a listing never is one).
- `\\x1f` alone between fields, no random boundary: every column is a number Slurm prints (an
  id, an epoch), none is text a user chose, so no line can forge a row; anything else in the
  output is a ParseError. The boundary cost 2 x 17 bytes per job (0.9 MB for 21,000 jobs).

`--duplicates` lists each run of a requeued job: the one shown is the last submitted (sacct
without -D shows that one), as in resolvers/slurm/history.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.sacct import delimiter

LISTING_FIELDS = ("JobIDRaw", "Submit", "End")


@dataclass(frozen=True, slots=True)
class Listed:
    """One job of a window's listing: what choosing a page reads."""

    job_id: int
    submit_time: int | None
    end_time: int | None


def _epoch(value: str) -> int | None:
    """SLURM_TIME_FORMAT=%s: seconds; 0, Unknown and None (not ended) are unset."""
    return int(value) or None if value.isascii() and value.isdigit() else None


def parse_listing(
    text: str, boundary: str = "", fields: Sequence[str] = LISTING_FIELDS
) -> list[Listed]:
    """The jobs of a listing made with this boundary and field list (which must hold
    LISTING_FIELDS; a capture with more columns reads the same), ordered by job id."""
    separator = delimiter(boundary)
    width = len(fields)
    raw_id, submit, end = (fields.index(name) for name in LISTING_FIELDS)
    shown: dict[int, Listed] = {}
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        values = line.split(separator)
        head = values[raw_id]
        if len(values) != width or not (head.isascii() and head.isdigit()):
            raise ParseError("sacct", line, "not a listing row (id, times)")
        job = Listed(int(head), _epoch(values[submit]), _epoch(values[end]))
        kept = shown.get(job.job_id)
        # Of a requeued job's runs, the last submitted is the one sacct without -D shows.
        if kept is None or (job.submit_time or 0) >= (kept.submit_time or 0):
            shown[job.job_id] = job
    return [shown[job_id] for job_id in sorted(shown)]
