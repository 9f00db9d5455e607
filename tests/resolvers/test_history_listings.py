"""ListingCache (resolvers/history_listings.py): what a kept window listing may serve, for how
long, and to whom. The fetches are plain coroutines counting their calls: the cache never sees
Slurm (tests/server/test_history.py runs it against the real sacct)."""

from __future__ import annotations

import asyncio

import pytest

from resolvers.history_listings import ListingCache
from resolvers.slurm.history_listing import Listed

JOBS = [Listed(1, 90, 103), Listed(2, 100, 300), Listed(3, 200, None)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fetch:
    def __init__(self, jobs: list[Listed] = JOBS, fail: bool = False) -> None:
        self.jobs, self.fail, self.calls = jobs, fail, 0

    async def __call__(self) -> list[Listed]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("sacct failed")
        return list(self.jobs)


async def test_a_listing_serves_its_key_within_ttl_and_a_window_moved_within_it() -> None:
    """Within the TTL the same key's listing serves, without the jobs that ended before a
    later start; past it, or for another key, sacct lists again."""
    clock, fetch = Clock(), Fetch()
    cache = ListingCache(10, clock=clock)
    assert await cache.get("alice", 100, 1000, fetch) == JOBS
    clock.now = 5
    assert await cache.get("alice", 105, 1005, fetch) == JOBS[1:]  # job 1 ended at 103
    assert (fetch.calls, cache.hits, cache.misses) == (1, 1, 1)
    assert await cache.get("bob", 100, 1000, fetch) == JOBS  # another requester: his own
    assert fetch.calls == 2
    clock.now = 10.5
    await cache.get("alice", 100, 1000, fetch)
    assert fetch.calls == 3


@pytest.mark.parametrize(("start", "end"), [(99, 1000), (100, 999), (200, 1000), (100, 1100)])
async def test_a_window_the_listing_does_not_cover_is_listed_again(start: int, end: int) -> None:
    """An earlier start or end (jobs the listing may lack), or one moved further than the TTL
    (plus a second of rounding), is listed again."""
    fetch = Fetch()
    cache = ListingCache(10, clock=Clock())
    await cache.get("k", 100, 1000, fetch)
    await cache.get("k", start, end, fetch)
    assert fetch.calls == 2


async def test_ttl_zero_keeps_nothing() -> None:
    """SLURM_GRAPHQL_HISTORY_LISTING_TTL=0: every page lists, and the misses say so."""
    fetch = Fetch()
    cache = ListingCache(0, clock=Clock())
    for _ in range(3):
        await cache.get("k", 100, 1000, fetch)
    assert (fetch.calls, cache.hits, cache.misses, cache.rows) == (3, 0, 3, 0)


async def test_a_failed_listing_is_not_kept() -> None:
    """A listing that failed is listed again by the next page, not served."""
    cache = ListingCache(10, clock=Clock())
    with pytest.raises(RuntimeError):
        await cache.get("k", 100, 1000, Fetch(fail=True))
    fetch = Fetch()
    assert await cache.get("k", 100, 1000, fetch) == JOBS and fetch.calls == 1


async def test_concurrent_pages_share_one_listing() -> None:
    """Pages of one key that come together run one sacct."""
    fetch = Fetch()
    cache = ListingCache(10, clock=Clock())
    found = await asyncio.gather(*(cache.get("k", 100, 1000, fetch) for _ in range(5)))
    assert found == [JOBS] * 5 and fetch.calls == 1


async def test_kept_listings_are_bounded_by_entries_and_jobs() -> None:
    """At most max_entries listings and max_rows jobs are kept (least recently used out); a
    listing larger than max_rows alone is not kept at all."""
    cache = ListingCache(10, max_entries=2, max_rows=5, clock=Clock())
    for key in ("a", "b", "c"):
        await cache.get(key, 100, 1000, Fetch())
    assert cache.rows <= 5
    fetch = Fetch()
    await cache.get("a", 100, 1000, fetch)
    assert fetch.calls == 1  # "a" went first
    big = Fetch([Listed(i, 100, 150) for i in range(6)])
    await cache.get("big", 100, 1000, big)
    await cache.get("big", 100, 1000, big)
    assert big.calls == 2 and cache.rows <= 5
