"""Where snapshots come from for one cluster: coalesced fetches and a short-lived cache.

Concurrent requests that need the same data share one transport call (single flight), and a
snapshot younger than `ttl` seconds that covers what a request needs is served again. With many
readers, the controller sees one squeue per TTL instead of one per request.

Under steady load a snapshot is refreshed ahead of time: once it is past half its TTL, the next
request starts a refresh in the background and is still served the current snapshot, which is
within its TTL. Readers then rarely wait for the head node, and no snapshot is served older than
the TTL. A refresh fetches everything recent requests needed, so one snapshot serves them all.

A request that reads only some jobs (`job(id)`, a users filter: resolvers/scope.py) is served a
fresh full snapshot when there is one, and otherwise fetches only its jobs. Such a partial
snapshot is coalesced and cached under its (needs, scope) alone, so it never answers a query it
does not cover, never becomes the full snapshot, and never tells the cluster's size. Once
lookups come often (FULL_AFTER_PARTIALS partial fetches within one TTL), one full snapshot is
fetched in the background: while it is fresh, every lookup is an index read, and refreshing it
ahead costs the head node one squeue per TTL instead of one per lookup.

How far ahead follows how long a full fetch takes (a 10,000-job queue on a busy head node can
take most of a 1 s TTL): the refresh starts early enough for the next snapshot to arrive, by
the fetches measured so far, before the current one expires. Were it started at a fixed half
TTL, every fetch slower than that left a gap in which each lookup ran its own squeue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from resolvers.bounds import KnownSizes, ListBounds
from resolvers.history_listings import ListingCache
from resolvers.log_values import loggable
from resolvers.scope import EVERY_JOB, JobScope
from resolvers.snapshot import Need, Snapshot, fetch_snapshot
from transport.base import Transport

if TYPE_CHECKING:
    from resolvers.shared import SharedSnapshots

logger = logging.getLogger("slurm_graphql.snapshots")

# Past this fraction of its TTL, a snapshot in use is refreshed in the background.
REFRESH_AHEAD = 0.5
# With replicas sharing snapshots (resolvers/shared.py), a snapshot's age counts from when its
# fetch ended (its data was read), and the next fetch starts one TTL after the previous one
# began: at most one fetch per TTL, start to start, for all replicas together, and it ends
# about when the current snapshot expires (a fetch as long as the last one), so readers keep
# being served meanwhile. Refreshing at 0.9 of the age cost 1.09-1.11 fetches per TTL
# (bench/replicas.py). This remains the age a shared snapshot may have to be taken instead of
# a fetch, for fetches that do not say.
SHARED_REFRESH_AHEAD = 0.9
# Partial snapshots kept at once (each a few jobs): point lookups of a dashboard's open jobs.
MAX_PARTIALS = 256
# Jobs all cached partial snapshots may hold together (a users filter may select thousands).
MAX_PARTIAL_JOBS = 50_000
# Partial fetches within one TTL after which a full snapshot serves the lookups instead.
FULL_AFTER_PARTIALS = 8
# A full snapshot whose fetch takes this share of the TTL or more (by the recent fetches) is
# nearly stale on arrival: lookups then keep to their own squeue --jobs.
FULL_TOO_LATE = 0.75
# TTLs after which lookups try a full snapshot again when fetches came too late to serve (the
# head node's load comes and goes: one slow fetch must not turn the cache off for long).
FULL_RETRY_TTLS = 5
# A refresh ahead starts this many estimated fetch times before the snapshot expires.
AHEAD_MARGIN = 1.25

_Key = tuple[Need, JobScope]


class SnapshotSource:
    def __init__(
        self,
        cluster: str,
        transport: Transport,
        *,
        ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sizes: KnownSizes | None = None,
        shared: SharedSnapshots | None = None,
        listings: ListingCache | None = None,
    ) -> None:
        self.cluster = cluster
        # jobHistory's window listings, per requester (resolvers/history_listings.py).
        self.listings = listings if listings is not None else ListingCache(ttl=0.0)
        self.transport = transport
        self.ttl = ttl
        self._clock = clock
        self._latest: tuple[float, Snapshot] | None = None
        self._in_flight: dict[_Key, tuple[int, asyncio.Future[Snapshot]]] = {}
        self._partials: OrderedDict[_Key, tuple[float, Snapshot]] = OrderedDict()
        self._partial_jobs = 0  # jobs the cached partial snapshots hold together
        # Bumped by invalidate(): fetches started before a write neither serve nor fill the
        # cache after it, so a writer never reads a snapshot older than its write.
        self._generation = 0
        # Background fetches and what each fetches: a task is in `_in_flight` only once it
        # has started, and requests served meanwhile (in the same turn of the loop) must not
        # start another whole-queue fetch each.
        self._background: dict[asyncio.Task[Snapshot], Need] = {}
        # Partial fetches since the start of the current TTL window: (window start, count).
        self._partial_rate: tuple[float, int] = (0.0, 0)
        # What queries of whole snapshots asked for lately, and when the latest asked: what a
        # poll fetches too (queried_needs).
        self._queried: tuple[Need, float] = (Need.NOTHING, 0.0)
        # Read by the metrics endpoint: gets, and gets served from the cache; the others waited
        # for the head node (a fetch of their own or one already in flight).
        self.lookups = 0
        self.hits = 0
        # What the snapshots have told of the cluster's size, whatever their age: what the
        # cost of a query is bounded by (resolvers/bounds.py).
        self.sizes = sizes if sizes is not None else KnownSizes()
        # The Slurm version the latest snapshot holding one reported: what a write's answer,
        # made without a snapshot of its own, resolves filename patterns with.
        self.version: str | None = None
        # Full snapshots shared with the other replicas through Redis (resolvers/shared.py), and
        # the write generation there that what this source caches belongs to (None: unknown,
        # while Redis does not answer; the source then acts alone).
        self.shared = shared if ttl > 0 else None
        self._ahead = REFRESH_AHEAD if self.shared is None else SHARED_REFRESH_AHEAD
        # When the last full snapshot was stored, and how long full fetches take (a moving
        # average of the recent ones): when to refresh ahead, and whether a full one pays.
        self._full_fetch: tuple[float, float] | None = None
        self._shared_generation: int | None = None
        # With shared snapshots: when the next full fetch is due (monotonic), one TTL after the
        # latest snapshot's fetch began; None while there is no shared snapshot.
        self._due: float | None = None

    async def get(self, needs: Need, scope: JobScope = EVERY_JOB) -> Snapshot:
        """A snapshot holding at least `needs`, fresh within the TTL, with at least the jobs
        `scope` selects."""
        if not needs:
            return Snapshot(cluster=self.cluster, taken_at=time.time(), needs=needs)
        if Need.JOBS not in needs:
            scope = EVERY_JOB
        if self.shared is not None:
            await self._follow_writes(self.shared)
        self.lookups += 1
        if scope.everything:
            held, _ = self._queried
            self._queried = (held | needs, self._clock())
        fresh = self.fresh()
        if fresh is not None:
            if needs in fresh.needs:
                self.hits += 1
                self._refresh_ahead(fresh)
                return fresh
            if scope.everything:
                needs |= fresh.needs
        if not scope.everything:
            partial = self._partial((needs, scope))
            if partial is not None:
                self.hits += 1
                return partial
            if (shared := await self._shared_full(needs)) is not None:
                self.hits += 1
                return shared
            if self._joinable(needs, scope) is None:  # joining a fetch under way costs nothing
                self._count_partial(needs | (fresh.needs if fresh is not None else Need.NOTHING))
        return await self.refresh(needs, scope, max_age=self.ttl)

    async def refresh(
        self, needs: Need, scope: JobScope = EVERY_JOB, *, max_age: float | None = None
    ) -> Snapshot:
        """A new snapshot holding `needs`, whatever the cache holds: what a poller asks for on
        every tick. A fetch already under way that covers `needs` is joined rather than doubled.
        The result becomes the cached snapshot, so requests within the TTL are served from it.

        A lookup of some jobs never waits for a whole queue under way: its own `squeue --jobs`
        takes ~10 ms, a 10,000-job refresh (slurmctld, squeue, the parse) hundreds, and joining
        it made every lookup between two cached snapshots wait that long (job(id)'s p99)."""
        pending = self._joinable(needs, scope)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._fetch(needs, scope, max_age)

    def _joinable(self, needs: Need, scope: JobScope) -> asyncio.Future[Snapshot] | None:
        """The fetch under way that a request for `needs` and `scope` joins, if any."""
        for (pending_needs, pending_scope), (generation, pending) in self._in_flight.items():
            if (
                needs in pending_needs
                and pending_scope.covers(scope)
                and generation == self._generation
                and (scope.everything or not pending_scope.everything)
            ):
                return pending
        return None

    def serves(self, snapshot: Snapshot) -> bool:
        """Is `snapshot` still what this source answers its requests with (the fresh full
        snapshot, or a fresh partial one under its own key)? What cached responses live by."""
        if snapshot is self.fresh():
            return True
        return self._partial((snapshot.needs, snapshot.scope)) is snapshot

    def _partial(self, key: _Key) -> Snapshot | None:
        found = self._partials.get(key)
        if found is None:
            return None
        if self._clock() - found[0] > self.ttl:
            del self._partials[key]
            self._partial_jobs -= len(found[1].jobs or ())
            return None
        return found[1]

    def _keep_partial(self, key: _Key, taken: float, snapshot: Snapshot) -> None:
        """Cache a partial snapshot; the oldest go first, expired ones as soon as anything is
        cached, so that a burst of distinct filters leaves no memory behind once it is over."""
        partials = self._partials
        replaced = partials.get(key)
        if replaced is not None:
            self._partial_jobs -= len(replaced[1].jobs or ())
        partials[key] = (taken, snapshot)
        partials.move_to_end(key)
        self._partial_jobs += len(snapshot.jobs or ())
        now = self._clock()
        held = self._partial_jobs
        while partials:
            oldest_taken, oldest = next(iter(partials.values()))
            if (
                len(partials) <= MAX_PARTIALS
                and held <= MAX_PARTIAL_JOBS
                and now - oldest_taken <= self.ttl
            ):
                break
            held -= len(oldest.jobs or ())
            partials.popitem(last=False)
        self._partial_jobs = held

    @property
    def bounds(self) -> ListBounds:
        """How long this cluster's lists were in the latest snapshots (None where no snapshot
        has held the dataset yet). Read-only: never fetches."""
        return self.sizes.bounds

    def queried_needs(self, within: float) -> Need:
        """What queries of whole snapshots asked for, if one asked within `within` seconds:
        what the poller fetches too, so its snapshot serves them. The cached snapshot's needs
        say the same only while it is fresh: a poll that found it just expired (a poll
        running late, or a TTL shorter than the interval) fetched the jobs alone, and the next
        query fetched the queue again (1.03 squeues per interval in bench/replicas.py)."""
        needs, at = self._queried
        return needs if self._clock() - at <= within else Need.NOTHING

    def fresh(self) -> Snapshot | None:
        """The cached snapshot if it is within its TTL, else None."""
        if self._latest is None:
            return None
        taken, snapshot = self._latest
        return snapshot if self._clock() - taken <= self.ttl else None

    def _count_partial(self, needs: Need) -> None:
        """Note a partial fetch; past FULL_AFTER_PARTIALS within one TTL, fetch everything
        `needs` names in the background (with the cache off, every request asks Slurm anyway)."""
        if self.ttl <= 0:
            return
        now = self._clock()
        start, count = self._partial_rate
        if now - start > self.ttl:
            start, count = now, 0
        count += 1
        if count >= FULL_AFTER_PARTIALS and self._full_pays(now):
            count = 0
            self._start_background(needs)
        self._partial_rate = (start, count)

    def _full_pays(self, now: float) -> bool:
        """Whether a full snapshot would serve lookups: not when full fetches take FULL_TOO_LATE
        of the TTL or more, so that one is (nearly) stale on arrival. A 10,000-job queue on a
        busy head node can take longer than a 1 s TTL: fetching it again and again then only
        added a whole queue's cost to every lookup's own squeue (measured: cache on twice as
        slow as cache off). Tried again after FULL_RETRY_TTLS TTLs, as the load may have gone."""
        last = self._full_fetch
        if last is None:
            return True
        ended, took = last
        return took < self.ttl * FULL_TOO_LATE or now - ended > self.ttl * FULL_RETRY_TTLS

    def _note_full_fetch(self, began: float) -> None:
        """Remember when a full fetch ended and, averaged with the earlier ones (one fetch may
        be an outlier on a busy head node), how long full fetches take."""
        ended = self._clock()
        took = ended - began
        if self._full_fetch is not None:
            took = (took + self._full_fetch[1]) / 2
        self._full_fetch = (ended, took)

    def _refresh_ahead(self, current: Snapshot) -> None:
        """Start the next full fetch once the current snapshot is `_ahead` of its TTL old, or
        earlier by as much as fetches take, so that the next arrives before this one expires
        and lookups meanwhile stay index reads (not one squeue each)."""
        assert self._latest is not None
        if self._due is not None:
            if self._clock() >= self._due:
                # Anything fetched since this snapshot will do: half its age excludes it.
                self._start_background(current.needs, (self._clock() - self._latest[0]) / 2)
            return
        start_at = self.ttl * self._ahead
        if self._full_fetch is not None:
            start_at = min(start_at, self.ttl - AHEAD_MARGIN * self._full_fetch[1])
        if self._clock() - self._latest[0] < start_at:
            return
        self._start_background(current.needs)

    def _start_background(self, needs: Need, max_age: float | None = None) -> None:
        """Fetch a full snapshot of `needs` in the background, unless one is under way (or
        about to start)."""
        if any(needs in pending and scope.everything for pending, scope in self._in_flight):
            return
        if any(needs in pending for pending in self._background.values()):
            return
        task = asyncio.ensure_future(self._fetch(needs, EVERY_JOB, max_age))
        self._background[task] = needs
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Snapshot]) -> None:
        self._background.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            # The next request that needs the data fetches it again and reports the error.
            logger.warning(
                "background refresh of %s failed: %s", self.cluster, loggable(task.exception())
            )

    async def aclose(self) -> None:
        """Stop background refreshes."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def follow_writes(self) -> None:
        """What a request does first (get), for callers of refresh: a poller's first poll on a
        replica that has answered no query yet learns the shared generation, and so fetches
        under the lease and stores its snapshot for every replica's queries."""
        if self.shared is not None:
            await self._follow_writes(self.shared)

    async def _follow_writes(self, shared: SharedSnapshots) -> None:
        """Forget what this source cached if a replica wrote since (one small read a request).

        Redis not answering, the generation stays the last one read: a Redis that restarts
        empty makes a new one (resolvers/shared.py), and one that only paused (a loaded
        replica's lag past its timeout, a network blip) keeps it, and this cache with it, so
        that each pause does not cost a fetch. A write made anywhere meanwhile is announced by
        its replica once Redis answers (SharedState.watch): a new generation."""
        generation = await shared.generation()
        if generation is not None and generation != self._shared_generation:
            self.invalidate()
            self._shared_generation = generation

    async def _shared_full(self, needs: Need) -> Snapshot | None:
        """Another replica's full snapshot holding `needs`, adopted as this source's own: it
        answers a query for some jobs without asking the head node."""
        if self.shared is None or self._shared_generation is None:
            return None
        generation = self._generation
        found = await self.shared.peek(needs, self._shared_generation, self.ttl)
        if found is None or generation != self._generation:
            return None
        snapshot, age, took = found
        taken = self._clock() - age
        self.sizes.record(snapshot, snapshot.needs)
        if snapshot.version is not None:
            self.version = snapshot.version
        if self._latest is None or self._latest[0] <= taken:
            self._latest = (taken, snapshot)
            self._due = taken - took + self.ttl
        return snapshot

    async def written(self) -> None:
        """A write went through this source: it and every replica forget their snapshots."""
        self.invalidate()
        if self.shared is not None:
            announced = await self.shared.written()
            if announced is not None:
                self._shared_generation = announced

    def invalidate(self) -> None:
        """Forget the cached snapshot (after a write, so the writer reads what it did)."""
        self._latest = None
        self._due = None
        self._partials.clear()
        self._partial_jobs = 0
        self._generation += 1

    async def _fetch_everything(self, needs: Need) -> Snapshot:
        return await fetch_snapshot(self.cluster, self.transport, needs, EVERY_JOB)

    async def _fetch(self, needs: Need, scope: JobScope, max_age: float | None = None) -> Snapshot:
        """Fetch (full snapshots: from another replica if it has one at most `max_age` old,
        by default half the TTL, as refreshing ahead asks) and cache the result."""
        if max_age is None:
            max_age = self.ttl * self._ahead
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        generation = self._generation
        key = (needs, scope)
        self._in_flight[key] = (generation, future)
        started = began = self._clock()
        due = None
        try:
            if self.shared is not None and scope.everything and self._shared_generation is not None:
                snapshot, age, took = await self.shared.fetch(
                    needs, self._shared_generation, max_age, self._fetch_everything
                )
                # When the snapshot was taken: `age` before now (not before this call began,
                # which made the lease holder's snapshot older by its own fetch, a waiter's by
                # its wait, and so its next refresh ahead that much earlier: more than one
                # fetch per TTL under load).
                started = self._clock() - age
                due = started - took + self.ttl
            else:
                snapshot = await fetch_snapshot(self.cluster, self.transport, needs, scope)
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting: mark the exception retrieved to keep asyncio quiet.
            future.exception()
            raise
        finally:
            if self._in_flight.get(key, (0, None))[1] is future:
                del self._in_flight[key]
        future.set_result(snapshot)
        # Some jobs say nothing of how many there are: only a full queue bounds a query's cost.
        self.sizes.record(snapshot, needs if scope.everything else needs & ~Need.JOBS)
        if snapshot.version is not None:
            self.version = snapshot.version
        if generation != self._generation:
            return snapshot
        if not scope.everything:
            if self.ttl > 0:
                self._keep_partial(key, started, snapshot)
        else:
            self._note_full_fetch(began)
            if self._latest is None or self._latest[0] <= started:
                self._latest = (started, snapshot)
                self._due = due
        return snapshot
