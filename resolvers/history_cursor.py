"""History cursors: the job a page ended on, and a time before its id was given, pushed into sacct.

A history page after a cursor needs only jobs with larger ids, and job ids are given in
increasing order over time: at submission, or, for an array task, when it is split from its
array (when it starts, or is cancelled alone). So the page's sacct may start its window later.

Why no job is lost. Without --state, sacct's window [S, E] selects a record when it was eligible
before E (with --jobs: submitted by E) and it ends at or after S, or has not ended; S appears
only in that last test (accounting_storage/mysql, 22.05 and 24.11 alike). Let c be the cursor's
job and a_c the time its id was given. A record of a job J with a larger id exists only from a_J
on (a requeued job's earlier runs end at a requeue; an array task's record is made when it is
split), so it ends after a_J > a_c, or has not ended. Raising S to any T <= a_c therefore keeps
every record of such a job that [S, E] held, and adds none: they read as before, the same record
shown for each job.

T is the earliest Submit among c's records in the cursor's page (HistoryRow.earliest_submit,
read with sacct --duplicates): a job never requeued was submitted at a_c; an array task carries
its array's Submit, before its own id; a requeued job's first run carries a_c. If that first run
is not in the window (it ended before S), the earliest run printed was submitted by the requeue
that ended the run before it, so before S, up to a second: T - SLACK <= S and nothing narrows.

Not pushed: with --state (sacct then selects by what happened in the window, state by state),
and when the query selects totalCount (which counts the jobs before the cursor too). A forged T
can only narrow the window the filter allows, never widen it. Assumed: job ids are neither reset
(a controller's lost state) nor wrapped (MaxJobId) within the window, as the ordering by id
already assumes.

The cursor also carries how many job ids the page it ended spent per job of the listing (its
stride, at least 1): the next page asks sacct for the next ids only (resolvers/history.py,
`next_ids`), as many as that stride says should hold a page, learnt from the jobs seen and
carried here rather than kept anywhere in the server. A forged stride only changes how many ids
are asked for, within a cap, never what a page holds.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from resolvers.ids import BadUserInput
from resolvers.pagination import decode_cursor, encode_cursor
from resolvers.slurm.values import is_decimal

_PREFIX = "history:"
# A requeue stamps the run it ends and the Submit of the next within the same second or so.
SLACK = 5


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    job_id: int  # the last job of the page before
    earliest_submit: int | None = None  # None: a plain job cursor, nothing to push
    stride: int | None = None  # job ids per listed job on the page before; None: unknown


def encode_history_cursor(job_id: int, earliest_submit: int | None, stride: int = 1) -> str:
    """The cursor after `job_id`; with the earliest Submit of its records when known, and the
    page's stride."""
    if earliest_submit is None:
        return encode_cursor(job_id)
    text = f"{_PREFIX}{job_id}:{earliest_submit}:{max(1, stride)}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_history_cursor(cursor: str) -> HistoryCursor:
    """The job id a cursor names, the time and stride it carries (None for a plain job cursor,
    and the stride of cursors issued before it was carried); BadUserInput for anything this API
    did not issue."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadUserInput(f"{cursor[:40]!r} is not a cursor this API issued") from None
    if not text.startswith(_PREFIX):
        return HistoryCursor(decode_cursor(cursor))
    parts = text[len(_PREFIX) :].split(":")
    if not (2 <= len(parts) <= 3 and all(is_decimal(part) for part in parts)):
        raise BadUserInput(f"{cursor[:40]!r} is not a cursor this API issued")
    stride = int(parts[2]) if len(parts) == 3 else None
    return HistoryCursor(int(parts[0]), int(parts[1]), stride)


def pushed_start(start: int, earliest_submit: int | None) -> int:
    """sacct's --starttime for the page after a cursor carrying `earliest_submit`: later than
    `start` only, never earlier."""
    if earliest_submit is None:
        return start
    return max(start, earliest_submit - SLACK)
