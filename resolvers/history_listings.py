"""Window listings kept a few seconds per requester, so consecutive first or counted pages of
jobHistory list the window once.

Why. A first page, or any page selecting totalCount, must list the whole window (sacct has no
LIMIT, and no narrower query provably holds the window's smallest job ids: resolvers/history.py,
`job_history`); that listing is ~250 ms of slurmdbd's for 21,000 jobs, most of a page's time.
A client paging with totalCount lists the same window again for every page.

What is kept. Per (requester, audience, filter), the listing's ids and times (Listed, ~140
bytes a job) for `ttl` seconds from when its sacct started (SLURM_GRAPHQL_HISTORY_LISTING_TTL;
0: off), in at most `max_entries` entries of at most `max_rows` jobs together (least recently
used first out; a listing larger than `max_rows` is not kept). Never shared between requesters:
the key holds the user sacct runs as and the audience, so bob's page runs his own sacct even
right after alice's, and a listing's count is only ever shown to whoever it was listed for.

Staleness, and why the window may move. A default window is "the last 24 hours" of its
request: two requests a second apart ask sacct for windows a second apart. A listing taken for
[start0, end0] at most `ttl` ago serves a window [start1, end1] with start0 <= start1 and
end0 <= end1, both within `ttl`: its jobs that ended before start1 are dropped here; what it
lacks are the jobs that became eligible after it was taken, at most `ttl` seconds of them,
which is the staleness every cached answer of this API has (SLURM_GRAPHQL_CACHE_TTL for live
jobs). The page's jobs are still read in full, by id and as the requester, when it is served.

Concurrent requests for the same key share one sacct (the first one's, shielded from its
caller's cancellation). A listing that fails is not kept. `hits` and `misses` are read by the
metrics endpoint (slurm_graphql_history_listing_cache).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from resolvers.slurm.history_listing import Listed

DEFAULT_TTL = 10.0
MAX_ENTRIES = 16
MAX_ROWS = 200_000  # ~28 MB of Listed at most, whatever the windows


@dataclass(frozen=True)
class _Entry:
    taken_at: float  # when its sacct started, on the cache's clock
    start: int
    end: int
    listing: asyncio.Future[list[Listed]]


class ListingCache:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        *,
        max_entries: int = MAX_ENTRIES,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._max_rows = max_rows
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def rows(self) -> int:
        """Jobs the kept listings hold together."""
        return sum(_size(e) for e in self._entries.values())

    async def get(
        self,
        key: Hashable,
        start: int,
        end: int,
        fetch: Callable[[], Awaitable[list[Listed]]],
    ) -> list[Listed]:
        """The window [start, end]'s listing for `key`: a kept one that may serve it (without
        the jobs that ended before `start`), or `fetch()`'s, kept for the next pages."""
        if self.ttl <= 0:
            self.misses += 1
            return await fetch()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and self._serves(entry, now, start, end):
            self.hits += 1
            self._entries.move_to_end(key)
            listing = await asyncio.shield(entry.listing)
            if start == entry.start:
                return listing
            return [row for row in listing if row.end_time is None or row.end_time >= start]
        self.misses += 1
        entry = _Entry(now, start, end, asyncio.ensure_future(fetch()))
        self._entries[key] = entry
        self._entries.move_to_end(key)
        try:
            listing = await asyncio.shield(entry.listing)
        except asyncio.CancelledError:
            raise  # our caller gave up: the shared fetch goes on for those waiting on it
        except Exception:
            if self._entries.get(key) is entry:  # failed: not kept
                del self._entries[key]
            raise
        self._trim()
        return listing

    def _serves(self, entry: _Entry, now: float, start: int, end: int) -> bool:
        if now - entry.taken_at > self.ttl:
            return False
        if entry.listing.done() and (entry.listing.cancelled() or entry.listing.exception()):
            return False
        slack = self.ttl + 1  # epoch seconds against a float clock: a second of rounding
        return entry.start <= start <= entry.start + slack and entry.end <= end <= entry.end + slack

    def _trim(self) -> None:
        """Expired entries out, then the least recently used until the bounds hold."""
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now - e.taken_at > self.ttl]:
            if self._entries[key].listing.done():
                del self._entries[key]
        for key, entry in list(self._entries.items()):
            if _size(entry) > self._max_rows:
                del self._entries[key]
        while len(self._entries) > self._max_entries or self.rows > self._max_rows:
            self._entries.popitem(last=False)


def _size(entry: _Entry) -> int:
    listing = entry.listing
    if not listing.done() or listing.cancelled() or listing.exception() is not None:
        return 0
    return len(listing.result())
