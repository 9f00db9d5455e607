"""A window's listing: each job's id, Submit and End alone, to choose a page of history. Pure.

A first or counted page of jobHistory lists the whole window (sacct has no LIMIT) and then
reads its page's jobs in full by id (resolvers/history.py). The listing's cost is slurmdbd's:
sacct asks for the window's job records whatever columns it prints (about 250 ms for 21,000
jobs here, 130-200 ms of them MariaDB's own query), and then ours, splitting its output. So it
prints only what choosing a page needs, in the fewest bytes:

- JobIDRaw (the order), Submit and End (the client's exact time bounds, `_within`; the earliest
  Submit of a requeued job's records is read again from the page's full rows, for the cursor),
  and JobID, which tells an array's own record (`Listed.task`) so that the page's read asks for
  it alone.
  Not UID: the audience is checked on the page's full rows, and sacct was asked for the
  audience's jobs alone. Not Eligible: the window's own query tests it (only a `--jobs` query
  does not, and a listing never is one).
- `\\x1f` alone between fields, no random boundary: every column is a number or a job id Slurm
  prints, none is text a user chose, so no line can forge a row; anything else in the output is
  a ParseError. The boundary cost 2 x 17 bytes per job (0.9 MB for 21,000 jobs).

`--duplicates` lists each run of a requeued job: the one shown is the last submitted (sacct
without -D shows that one), as in resolvers/slurm/history.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from resolvers.slurm.errors import ParseError
from resolvers.slurm.sacct import delimiter

LISTING_FIELDS = ("JobIDRaw", "JobID", "Submit", "End")
_NEEDED = ("JobIDRaw", "Submit", "End")  # captures made before JobID was listed have no JobID
# JobID as Slurm prints it: 42, an array task 42_3 (or a pending remainder 42_[3-9%2]), a het
# job's component 42+1.
_JOB_ID = re.compile(r"^(\d{1,10})(?:_(\d{1,10})|_\[[0-9,%-]{1,200}\])?(?:\+\d{1,10})?\Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class Listed:
    """One job of a window's listing: what choosing a page reads."""

    job_id: int
    submit_time: int | None
    end_time: int | None
    # When this is an array's own record (its raw id is the array's id: JobID `A_T` with A the
    # raw id), its task id: sacct is then asked for `A_T`, as plain `A` brings every task of
    # the array (1,000 tasks and their steps: ~180 ms instead of ~60 for a page of 50 here).
    task: int | None = None

    @property
    def asked(self) -> int | tuple[int, int]:
        """How `sacct --jobs` is asked for this job alone (HistoryQuery.id_list)."""
        return self.job_id if self.task is None else (self.job_id, self.task)


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
    raw_id, submit, end = (fields.index(name) for name in _NEEDED)
    shown_as = fields.index("JobID") if "JobID" in fields else None
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
        if shown_as is not None:
            job = _with_task(job, values[shown_as], line)
        kept = shown.get(job.job_id)
        # Of a requeued job's runs, the last submitted is the one sacct without -D shows.
        if kept is None or (job.submit_time or 0) >= (kept.submit_time or 0):
            shown[job.job_id] = job
    return [shown[job_id] for job_id in sorted(shown)]


def _with_task(job: Listed, shown: str, line: str) -> Listed:
    """The job with its task id if JobID says it is its array's own record."""
    match = _JOB_ID.match(shown)
    if match is None:
        raise ParseError("sacct", line, "not a job id Slurm prints")
    array, task = match.group(1), match.group(2)
    if task is not None and int(array) == job.job_id:
        return replace(job, task=int(task))
    return job
