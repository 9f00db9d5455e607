"""Cluster.jobHistory: one page of finished jobs from slurmdbd, as the requesting user.

One `sacct` per page, run as the requester (so Slurm's own PrivateData applies), with every
filter pushed into it (resolvers/slurm/history.py). Slurm alone does not keep users apart here:
without PrivateData bob's `sacct --user=alice` lists alice's jobs (a golden file shows it), so
under SLURM_GRAPHQL_JOB_VISIBILITY=own the users filter is narrowed to the requester before the
command is built, and every record is checked against the request's audience again after.

Pages are ordered by job id and cut after the `after` cursor, so a page does not shift while new
jobs finish: a job that ends later has a larger id than any job already paged past, or appears
on a page still to come. A page that does not count the jobs also starts sacct's window later
(resolvers/history_cursor.py says why no job is lost).
"""

from __future__ import annotations

import asyncio
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace

from resolvers.history_cursor import decode_history_cursor, encode_history_cursor, pushed_start
from resolvers.history_listings import ListingCache
from resolvers.ids import BadUserInput
from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from resolvers.slurm.history import (
    MAX_IDS,
    HistoryQuery,
    HistoryRecord,
    HistoryRow,
    history_command,
    history_fields,
    history_record,
    history_rows,
    parse_history,
    validate_query,
)
from resolvers.slurm.history_listing import Listed, parse_listing
from resolvers.slurm.jobs import new_boundary
from resolvers.visibility import Visibility
from transport.base import Command, Transport

DAY = 86_400
DEFAULT_WINDOW = DAY  # the last 24 hours, when no time bound is given
EARLIEST = 946_684_800  # 2000-01-01: no Slurm accounting reaches further back
FUTURE_SLACK = DAY  # a bound may lie this far in the future (clock skew), not more
CLOCK_SLACK = 60


@dataclass(frozen=True, slots=True)
class HistoryFilterValues:
    """A JobHistoryFilter as plain values (epoch seconds); None means not given."""

    users: tuple[str, ...] | None = None
    accounts: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    qos: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    submitted_after: int | None = None
    submitted_before: int | None = None
    ended_after: int | None = None
    ended_before: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    records: tuple[HistoryRecord, ...]
    has_next_page: bool
    has_previous_page: bool  # false when unknown (a pushed cursor: jobs before it unread)
    total_count: int  # of the jobs sacct read: all of the filter's unless a cursor was pushed
    cursors: tuple[str, ...] = ()  # one per record


def window(values: HistoryFilterValues, now: int, max_days: int) -> tuple[int, int]:
    """sacct's --starttime/--endtime for the filter: the latest lower bound given (default: 24 h
    ago) to the earliest upper bound (default: now, and a minute). BadUserInput for a window
    that ends before it starts, lies outside 2000..now+1 day, or is wider than `max_days`."""
    lows = [t for t in (values.submitted_after, values.ended_after) if t is not None]
    highs = [t for t in (values.submitted_before, values.ended_before) if t is not None]
    # Without an upper bound, a minute past now: the head node's clock may run ahead of ours.
    end = min(highs) if highs else now + CLOCK_SLACK
    start = max(lows) if lows else now - DEFAULT_WINDOW
    for bound in (*lows, *highs):
        if not EARLIEST <= bound <= now + FUTURE_SLACK:
            raise BadUserInput("a history time bound lies before 2000 or too far in the future")
    if end < start:
        raise BadUserInput("the history window ends before it starts")
    if end - start > max_days * DAY:
        raise BadUserInput(
            f"the history window is wider than {max_days} days "
            "(SLURM_GRAPHQL_MAX_HISTORY_DAYS); narrow it with submittedAfter/endedAfter"
        )
    return start, end


def history_query(
    values: HistoryFilterValues, audience: Visibility, now: int, max_days: int
) -> HistoryQuery | None:
    """The sacct query for the filter as `audience` may ask it; None when the filter names only
    users the audience may not see (nothing to run: the answer is empty)."""
    start, end = window(values, now, max_days)
    asked = validate_query(
        HistoryQuery(
            start=start,
            end=end,
            users=values.users or (),
            accounts=values.accounts,
            partitions=values.partitions,
            qos=values.qos,
            states=values.states,
            names=values.names,
            job_ids=values.job_ids,
        )
    )  # every value checked, even those narrowing below makes moot
    if audience.everyone:
        return asked
    assert audience.owner is not None
    if values.users is not None and audience.owner not in values.users:
        return None
    return replace(asked, users=(audience.owner,))


def _within(row: HistoryRow | Listed, values: HistoryFilterValues) -> bool:
    """The exact time bounds: sacct's window selects jobs active in it, a superset."""
    submit, end = row.submit_time, row.end_time
    lower = ((values.submitted_after, submit), (values.ended_after, end))
    upper = ((values.submitted_before, submit), (values.ended_before, end))
    return all(b is None or (t is not None and t >= b) for b, t in lower) and all(
        b is None or (t is not None and t <= b) for b, t in upper
    )


def page_of(
    rows: Sequence[Listed], first: int, last_seen: int | None
) -> tuple[Sequence[Listed], bool, bool]:
    """The `first` rows after job `last_seen` (rows ordered by job id), whether more follow,
    and whether any came before."""
    start = 0 if last_seen is None else bisect_right(rows, last_seen, key=_job_id)
    return rows[start : start + first], start + first < len(rows), start > 0


def _job_id(row: HistoryRow | Listed) -> int:
    return row.job_id


MAX_JOB_ID = (1 << 32) - 1  # a job id is a uint32 in Slurm: no id list reaches past it
# Ids asked for beyond what the stride says a page needs: strides vary from page to page.
ID_MARGIN = 2


def next_ids(last_seen: int, first: int, stride: int | None) -> range | None:
    """The job ids after `last_seen` a page of `first` asks sacct for, if the cursor's stride
    says how many should hold it (first + 1 jobs: one more tells whether a page follows)
    within MAX_IDS; None: read the window."""
    if stride is None or stride < 1 or first == 0:  # a cursor is the client's to forge
        return None
    count = stride * (first + 1) * ID_MARGIN
    if count > MAX_IDS or last_seen + count > MAX_JOB_ID:
        return None
    return range(last_seen + 1, last_seen + 1 + count)


def _stride(rows: Sequence[HistoryRow], last_seen: int | None) -> int:
    """Job ids per job of the page: the ids it spans (from the cursor before it) over its size."""
    if not rows:
        return 1
    base = rows[0].job_id - 1 if last_seen is None else last_seen
    return max(1, -(-(rows[-1].job_id - base) // len(rows)))


async def _rows(
    transport: Transport,
    user: str,
    queries: Sequence[HistoryQuery],
    *,
    steps: bool,
    qos: bool,
    eligible_before: int | None = None,
) -> list[list[HistoryRow]]:
    """One sacct per query as `user`, all in one round trip, each split into rows. No
    slurmdbd: SlurmError ACCOUNTING_DISABLED, which clients get as ACCOUNTING_UNAVAILABLE with
    Slurm's message; slurmdbd down: ACCOUNTING_UNREACHABLE (SLURM_UNAVAILABLE)."""
    boundaries = [new_boundary() for _ in queries]
    built = [
        history_command(query, boundary, steps=steps, qos=qos)
        for query, boundary in zip(queries, boundaries, strict=True)
    ]
    results = await transport.run([Command(b.argv, env=b.env, user=user) for b in built])
    fields = history_fields(qos=qos)
    return [
        history_rows(check(result).stdout, boundary, fields, eligible_before=eligible_before)
        for result, boundary in zip(results, boundaries, strict=True)
    ]


async def job_history(
    transport: Transport,
    user: str,
    audience: Visibility,
    values: HistoryFilterValues,
    first: int,
    after: str | None,
    now: int,
    max_days: int,
    *,
    steps: bool = True,
    count: bool = True,
    qos: bool = True,
    listings: ListingCache | None = None,
) -> HistoryPage:
    """One page of history, `first` jobs after the `after` cursor, as `user`.

    sacct has no LIMIT: over a window, slurmdbd reads and sends every job of it (about 0.5 s
    for 21,000 jobs, ten times that with their steps). So, in this order:
    - after a cursor, without a state filter: one `sacct --jobs` of the next ids only
      (`next_ids`; about 0.1 s), and if the jobs it finds are too few to fill the page and tell
      whether another follows, the window after all (`_from_ids` says why a full answer is the
      window's own); with totalCount, the window's listing runs beside it, at the same time;
    - else a listing of the window (`--allocations`, ids and times alone: LISTING_FIELDS),
      narrowed by the cursor when not counting (resolvers/history_cursor.py), to choose the
      page; then one `sacct --jobs` of the page's jobs to read them in full (with their steps
      when the query selects steps or efficiency): two sacct, two round trips. The listing is
      kept in `listings` a few seconds for the requester's next first or counted pages, which
      then run the second sacct alone (resolvers/history_listings.py).

    Why no narrower sacct lists the window's smallest job ids (which would spare a first page
    the whole listing). accounting_storage/mysql (as_mysql_jobacct_process.c, 22.05.8 and
    24.11.5 alike) selects a window's records by `time_eligible && time_eligible < E &&
    (time_end >= S || time_end = 0)`, `order by id_job, time_submit desc`, with no LIMIT and no
    id range: `--jobs` takes a list (at most MAX_IDS here), a narrower --starttime/--endtime
    selects by the same times, and `--state` by state and end time. A job's id is given at
    submission, but its eligibility may come any time later (held, dependencies, begin time) and
    its end later still: a job submitted a week ago, released an hour ago, has a smaller id
    than every job submitted since and is in today's window. So no time, state or id bound
    proves that the jobs it lists are the window's first: only the window's own listing does.
    Without `qos` (the query does not select it) sacct prints no QOS name, which costs it a
    request for slurmdbd's whole QOS list."""
    cursor = None if after is None else decode_history_cursor(after)
    last_seen = None if cursor is None else cursor.job_id
    query = history_query(values, audience, now, max_days)
    if query is None:
        return HistoryPage((), False, False, 0)
    counted = count or bool(query.states)
    if not counted:
        start = pushed_start(query.start, None if cursor is None else cursor.earliest_submit)
        if start > query.end:  # no job after the cursor can lie in the window
            return HistoryPage((), False, False, 0)
        query = replace(query, start=start)
    ids = None
    if cursor is not None and not query.job_ids and not query.states:
        ids = next_ids(cursor.job_id, first, cursor.stride)
    listing: list[Listed] | None = None
    rows: list[HistoryRow] = []  # read in full already: the window's jobs with an id in `ids`
    if cursor is not None and ids is not None:
        reading = _from_ids(transport, user, query, ids, steps=steps, qos=qos)
        if counted:
            # The count needs the window's listing: it is listed beside the next ids, at once,
            # so the page costs the longer of the two sacct rather than both one after the other.
            rows, listing = await asyncio.gather(
                reading, _kept_listing(transport, user, audience, query, listings)
            )
        else:
            rows = await reading
        seen = [row for row in rows if audience.sees(row.user) and _within(row, values)]
        if len(seen) > first:  # a full page and one more: the window holds no other
            if listing is None:
                return _answer(seen[:first], True, False, len(seen), cursor.job_id)
            counted_rows = [row for row in listing if _within(row, values)]
            before = bisect_right(counted_rows, cursor.job_id, key=_job_id)
            return _answer(seen[:first], True, before > 0, len(counted_rows), cursor.job_id)
    # The window's listing: no user column, so the audience is checked on the page's full rows
    # below; sacct was asked for the audience's jobs alone (history_query).
    if listing is None:
        listing = await _kept_listing(transport, user, audience, query, listings)
    listed = [row for row in listing if _within(row, values)]
    chosen, has_next, has_previous = page_of(listed, first, last_seen)
    asked = ids or range(0)
    # The page's jobs among the next ids were read already, in full: the rest are read by id.
    read = {row.job_id: row for row in rows if audience.sees(row.user)}
    rest = [row for row in chosen if row.job_id not in asked]
    read |= {
        row.job_id: row
        for row in await _in_full(transport, user, audience, query, rest, steps=steps, qos=qos)
    }
    page = [read[row.job_id] for row in chosen if row.job_id in read]
    return _answer(page, has_next, has_previous, len(listed), last_seen)


async def _kept_listing(
    transport: Transport,
    user: str,
    audience: Visibility,
    query: HistoryQuery,
    listings: ListingCache | None,
) -> list[Listed]:
    """The window's listing, from `listings` when a recent one of this requester's serves."""
    if listings is None:
        return await _listing(transport, user, query)
    # The requester, what they may see, and the filter: never another user's listing.
    key = (user, audience.everyone, audience.owner, replace(query, start=0, end=0))
    return await listings.get(key, query.start, query.end, lambda: _listing(transport, user, query))


async def _listing(transport: Transport, user: str, query: HistoryQuery) -> list[Listed]:
    """The window's jobs, ids and times alone (resolvers/slurm/history_listing.py), as `user`."""
    built = history_command(query, "", steps=False, listing=True)
    [result] = await transport.run([Command(built.argv, env=built.env, user=user)])
    return parse_listing(check(result).stdout)


def _answer(
    page: Sequence[HistoryRow],
    has_next: bool,
    has_previous: bool,
    total: int,
    last_seen: int | None,
) -> HistoryPage:
    stride = _stride(page, last_seen)
    records = tuple(history_record(row) for row in page)
    cursors = tuple(encode_history_cursor(r.job_id, r.earliest_submit, stride) for r in page)
    return HistoryPage(records, has_next, has_previous, total, cursors)


async def _from_ids(
    transport: Transport,
    user: str,
    query: HistoryQuery,
    ids: Sequence[int | tuple[int, int]],
    *,
    steps: bool,
    qos: bool,
) -> list[HistoryRow]:
    """The jobs of the window whose ids lie in `ids`, exactly as the window's sacct would list
    them, by one `sacct --jobs` of those ids (a pair (A, T): the array's own record A, asked
    as `A_T`).

    Why the same. With the same filters, options and [S, E], accounting_storage/mysql (22.05
    and 24.11 alike) selects, for --jobs=L, the records with (id_job in L, or het_job_id in L,
    or id_array_job in L) and time_submit < E and (time_end >= S or not ended); for the window,
    those with time_eligible set and < E and the same end test. Slurm sets a record's Eligible
    at or after its Submit, so of the records whose own id is in L, the window's are exactly
    the --jobs ones eligible before E: `eligible_before` keeps those, record by record (a
    requeued job's next run may be submitted, not yet eligible). The het and array terms only
    add records of other ids, which the id range drops. With --state, both select by the same
    state-and-time test, and no eligibility is tested (nor filtered here); with the client's own
    job ids, the window's query is a --jobs one already. `A_T` selects the records with
    (id_array_job, id_array_task) = (A, T) under the same time test: the array's own record,
    whose id is A, and no other task.

    So every job of the window with an id in `ids` is here, with the records the window shows;
    the caller knows nothing of the jobs past `ids`, which is why it needs one more job than
    the page to answer from these alone. More than MAX_IDS ids (a page of steps larger than
    that) are asked in several sacct of MAX_IDS, run together in the one round trip."""
    if not ids:
        return []
    chunks = [tuple(ids[i : i + MAX_IDS]) for i in range(0, len(ids), MAX_IDS)]
    tested = query.states or query.job_ids  # no eligibility test in the window's own query
    found = await _rows(
        transport,
        user,
        [replace(query, job_ids=(), id_list=chunk) for chunk in chunks],
        steps=steps,
        qos=qos,
        eligible_before=None if tested else query.end,
    )
    # Each chunk's own ids only: an array's id in one chunk brings tasks of another's.
    rows: list[HistoryRow] = []
    for chunk, got in zip(chunks, found, strict=True):
        own = {i if isinstance(i, int) else i[0] for i in chunk}
        rows += (row for row in got if row.job_id in own)
    return sorted(rows, key=_job_id)


async def _in_full(
    transport: Transport,
    user: str,
    audience: Visibility,
    query: HistoryQuery,
    page: Sequence[Listed],
    *,
    steps: bool,
    qos: bool,
) -> list[HistoryRow]:
    """The page's jobs read in full (with their steps if `steps`) by one `sacct --jobs` of
    their ids: the same records as the window's (`_from_ids`). Each is checked against the
    audience again (sacct was asked for the audience's jobs alone: a job of another user here
    is Slurm's error, and is left out); a job the second call no longer finds (purged from the
    database in between) is left out too."""
    wanted = sorted({row.asked for row in page}, key=_first)
    found = {
        row.job_id: row
        for row in await _from_ids(transport, user, query, wanted, steps=steps, qos=qos)
        if audience.sees(row.user)
    }
    return [found[row.job_id] for row in page if row.job_id in found]


def _first(asked: int | tuple[int, int]) -> int:
    return asked if isinstance(asked, int) else asked[0]


_SACCT_JOB_ID = re.compile(r"^\d{1,10}(?:_\d{1,10})?\Z", re.ASCII)


async def forgotten_job(
    transport: Transport, user: str, audience: Visibility, job_id: str, now: int
) -> HistoryRecord | None:
    """A job Slurm's controller no longer holds, from slurmdbd (sacct as `user`); None if
    accounting does not know it, the audience may not see it, or the id is a form sacct cannot
    be asked for (`42_[1-3]`). No accounting (no slurmdbd) is the same as not knowing."""
    if not _SACCT_JOB_ID.match(job_id):
        return None
    query = HistoryQuery(EARLIEST, now + CLOCK_SLACK, job_ids=(job_id,))
    if not audience.everyone:
        assert audience.owner is not None
        query = replace(query, users=(audience.owner,))
    boundary = new_boundary()
    built = history_command(query, boundary)
    [result] = await transport.run([Command(built.argv, env=built.env, user=user)])
    try:
        records = parse_history(check(result).stdout, boundary)
    except SlurmError as exc:
        if exc.kind is SlurmErrorKind.ACCOUNTING_DISABLED:
            return None
        raise
    for record in records:
        if record.display_id == job_id or str(record.job_id) == job_id:
            return record if audience.sees(record.user) else None
    return None
