"""Snapshots shared by every replica through Redis (SLURM_GRAPHQL_REDIS_URL).

Per cluster, three keys, all under the service's namespace and the cluster's hash tag (one
cluster slot, so the scripts below also run on a clustered cache):

    <namespace>:{<cluster>}:snapshot     the latest full snapshot (resolvers/shared_codec.py),
                                         expiring a cache TTL after its data was read (when
                                         its fetch ended)
    <namespace>:{<cluster>}:snapshot-took  how long that fetch took (ms), set with it: so each
                                         replica knows when the fetch began, and refreshes one
                                         TTL after that (resolvers/source.py), not earlier
    <namespace>:{<cluster>}:lease        who is fetching one now: a random token, SET NX PX
                                         the lease (about 1.25 poll intervals), renewed by its
                                         holder while its fetch runs
    <namespace>:{<cluster>}:generation   bumped by every write, on any replica; made from Redis'
                                         clock when absent, so a Redis that restarted empty (or
                                         evicted it) starts a generation no replica has seen

No key holds anything a client wrote: cluster names come from the configuration, and the values
are what this service fetched from Slurm. A replica that misses reads the snapshot; if there is
none fresh enough, it takes the lease and fetches, or, when another replica holds it, waits for
that replica's snapshot as long as the holder renews the lease (however slow its fetch), and
takes the lease and fetches itself as soon as it lapses (the holder died). So concurrent misses
across replicas cost the head node one round trip, and a holder killed mid-fetch delays the
others by one short lease, not a fixed 5 s: the new poll leader's first poll (which goes
through here) starts within the leader lease's own two intervals. A lease that is not one of
ours (no expiry, longer than MAX_LEASE_SECONDS, or not a token) is deleted and logged, so a
value planted in Redis cannot stall readers. A write bumps
the generation and drops the snapshot; a replica compares the generation on each request and
forgets what it cached before, so a write on one replica is read back on every other.

Redis failing never fails a request: the call that fails marks Redis down (logged once, counted
for /metrics, named in /readyz) and the replica serves from its own cache as it would alone.
While it is down no request waits on Redis: the app's lifespan runs SharedState.watch, which
PINGs it every RETRY_AFTER seconds, marks it up when it answers, and then announces the writes
made here meanwhile (a new generation). A replica drops what it cached when the generation
changed: a write announced late, or a Redis that restarted empty (which makes a new one); a
Redis that only paused keeps the generation, and each replica its cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from resolvers.shared_codec import CorruptSharedValue, decode, encode
from resolvers.snapshot import Need, Snapshot
from slurm_graphql.errors import SlurmGraphQLError

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("slurm_graphql.shared")

NAMESPACE = "slurm-graphql"
# The fetch lease lasts LEASE_INTERVALS of the shorter of the poll interval and the TTL, as the
# poll leader's (resolvers/shared_poll.py), never less than LEASE_FLOOR nor more than
# MAX_LEASE_SECONDS; its holder renews it RENEWALS times a lease while the fetch runs, so only an
# event loop stalled for 3/4 of a lease (~0.9 s at a 1 s interval) lets it lapse, and a holder
# killed mid-fetch blocks the others at most one lease. A short fetch lease keeps failover within
# two intervals: it lapses no later than the dead leader's own lease.
LEASE_INTERVALS = 1.25
LEASE_FLOOR = 0.5
MAX_LEASE_SECONDS = 10.0
RENEWALS = 4
# The most a waiter waits for a holder that keeps renewing: longer than any transport's timeout
# (ssm:// 60 s), so a live holder's slow fetch is always waited out, while a lease an intruder
# keeps renewing in Redis cannot hold readers forever.
MAX_WAIT_SECONDS = 120.0
# How often a waiter looks whether the holder's snapshot has come.
WAIT_STEP = 0.01
# Once Redis failed, how often SharedState.watch tries it again (seconds).
RETRY_AFTER = 1.0

# Keep a snapshot only if no write came since its fetch started (KEYS: snapshot, generation,
# snapshot-took; ARGV: generation, value, ms to keep, ms the fetch took).
_STORE = """
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
return 1
"""
# Keep the lease while the fetch runs (KEYS: lease; ARGV: token, ms): 1 if it was still ours.
# A lease that lapsed is not taken again: a renewal still on its way when the fetch is over
# would then hold it, with no fetch behind it, for a whole lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Drop the lease only if it is still ours, or still the foreign value we saw (KEYS: lease).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A generation starts at the server's clock in microseconds, not at 0 or 1, so that a Redis
# restarted empty never hands out again a number replicas saw before it went: a replica that
# cached through the outage (or never noticed it) reads a generation it does not hold and drops
# what it cached, writes made meanwhile included. Reading one therefore makes it if absent,
# and replaces one that is not a count (anything but up to 18 digits: planted or corrupted),
# which would otherwise fail every write's INCR, each then taking Redis for down.
_MAKE_GENERATION = """
local held = redis.call('GET', KEYS[1])
local remade = 0
if not held or #held > 18 or not string.match(held, '^%d+$') then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], now[1] .. string.format('%06d', now[2]))
  remade = held and 1 or 0
end
"""
# Returns {generation, 1 if a value that was not one was replaced}.
_GENERATION = _MAKE_GENERATION + "return {redis.call('GET', KEYS[1]), remade}\n"
# A write: a new generation, and no snapshot of the old one (KEYS: generation, snapshot).
_BUMP = (
    _MAKE_GENERATION
    + """
local generation = redis.call('INCR', KEYS[1])
redis.call('DEL', KEYS[2])
return generation
"""
)

T = TypeVar("T")


class SharedUnavailable(SlurmGraphQLError):
    """Redis did not answer (or answered nonsense); the caller acts alone. Never leaves this
    module's callers: it is caught where the replica falls back."""


class SharedState:
    """The Redis client of one app and whether Redis is answering."""

    def __init__(self, client: Redis, namespace: str = NAMESPACE, max_bytes: int | None = None):
        self.client = client
        self.namespace = namespace
        self.max_bytes = max_bytes
        # Names this replica where replicas say what they need (resolvers/shared_poll.py).
        self.replica = secrets.token_hex(8)
        self._down = False
        # Clusters written here while Redis did not answer: their writes are announced (a new
        # generation) as soon as it answers again, so other replicas drop what they cached.
        self._unannounced: dict[str, SharedSnapshots] = {}
        # Read by /metrics and /readyz.
        self.failures = 0  # calls that failed, each making this replica act alone
        self.corrupt = 0  # values read back and refused

    @property
    def up(self) -> bool:
        return not self._down

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()`'s result; SharedUnavailable if Redis is down or fails now (then marked down
        until watch() hears it again: no request waits on a Redis that is not there)."""
        if self._down:
            raise SharedUnavailable
        return await self._attempt(make)

    async def watch(self) -> None:
        """PING Redis every RETRY_AFTER seconds while it is down, and mark it up as soon as it
        answers (run by the app's lifespan). Only this waits on a Redis that is down: the flag
        /readyz shows, and every request reads, flips back within RETRY_AFTER of its return,
        whether or not requests come meanwhile."""
        while True:
            await asyncio.sleep(RETRY_AFTER)
            if self._down:
                with contextlib.suppress(SharedUnavailable):
                    await self._attempt(self.client.ping)
            for cluster, snapshots in list(self._unannounced.items()):
                if not self._down and await snapshots.written() is not None:
                    self._unannounced.pop(cluster, None)

    def announce_later(self, snapshots: SharedSnapshots) -> None:
        """A write on `snapshots`' cluster could not be announced: watch() will."""
        self._unannounced[snapshots.cluster] = snapshots

    async def _attempt(self, make: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        try:
            try:
                result = await make()
            except RedisConnectionError:
                # Once: a pooled connection to a Redis that restarted fails its first command
                # (and is dropped); a new one answers if Redis is there.
                result = await make()
        except (TimeoutError, RedisError, OSError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The caller was cancelled mid-command and the client reported it as a failure:
                # it stays a cancellation (a loop that goes on after SharedUnavailable, such as
                # the leader's lease renewal, would otherwise never end), and Redis is not down.
                raise asyncio.CancelledError from exc
            self.failures += 1
            if not self._down:
                self._down = True
                # Once per outage; the class names the failure without its text (which may
                # carry the URL).
                logger.warning(
                    "Redis unreachable (%s): each replica uses its own cache until it answers",
                    type(exc).__name__,
                )
            raise SharedUnavailable from None
        if self._down:
            logger.warning("Redis answers again: replicas share snapshots again")
            self._down = False
        return result

    def key_prefix(self, cluster: str) -> str:
        """Where one cluster's keys live: the namespace, then the cluster name as a hash tag,
        so that they share one slot and a script may touch several on a clustered cache."""
        return f"{self.namespace}:{{{cluster}}}"

    def refused(self, key: str, exc: CorruptSharedValue) -> None:
        self.corrupt += 1
        logger.warning("ignored the value of %s in Redis: %s", key, exc)

    async def aclose(self) -> None:
        await self.client.aclose()


class SharedSnapshots:
    """One cluster's full snapshots in Redis."""

    def __init__(
        self, state: SharedState, cluster: str, ttl: float, interval: float | None = None
    ) -> None:
        self.state = state
        self.cluster = cluster
        self.ttl = ttl
        self.lease = fetch_lease(ttl, ttl if interval is None else interval)
        prefix = state.key_prefix(cluster)
        self.snapshot_key = f"{prefix}:snapshot"
        self.took_key = f"{prefix}:snapshot-took"
        self.lease_key = f"{prefix}:lease"
        self.generation_key = f"{prefix}:generation"
        self._clock = time.monotonic
        # Counters for /metrics: snapshots another replica fetched, and fetches of our own.
        self.shared_hits = 0
        self.fetches = 0
        self.leases_lost = 0  # fetches that outlived their lease (a stalled loop)
        # The latest snapshot this replica encoded or read back, with its bytes: the poll
        # leader publishes those rather than encode the same snapshot again (tens of ms of
        # its event loop at 3,000 jobs, before any follower hears of the poll).
        self._encoded: tuple[Snapshot, bytes] | None = None
        self._encoded_generation = 0  # the write generation those bytes hold

    async def generation(self) -> int | None:
        """The cluster's write generation; None when Redis is not answering."""
        client = self.state.client
        try:
            answer = await self.state.call(lambda: client.eval(_GENERATION, 1, self.generation_key))
        except SharedUnavailable:
            return None
        raw, remade = answer if isinstance(answer, list) and len(answer) == 2 else (None, 0)
        if remade == 1:
            self.state.refused(self.generation_key, CorruptSharedValue("not a count: replaced"))
        if not (isinstance(raw, bytes) and raw.isdigit() and len(raw) < 20):
            self.state.refused(self.generation_key, CorruptSharedValue("not a count"))
            return None
        return int(raw)

    async def written(self) -> int | None:
        """A write happened: every replica forgets what it cached before it."""
        client = self.state.client
        try:
            raw = await self.state.call(
                lambda: client.eval(_BUMP, 2, self.generation_key, self.snapshot_key)
            )
        except SharedUnavailable:
            self.state.announce_later(self)
            return None
        return raw if isinstance(raw, int) else None

    async def fetch(
        self,
        needs: Need,
        generation: int,
        max_age: float,
        fetch_own: Callable[[Need], Awaitable[Snapshot]],
    ) -> tuple[Snapshot, float, float]:
        """A snapshot holding `needs` of `generation` at most `max_age` seconds old (or taken
        since this call began), its age (since its fetch ended: when its data was read) and how
        long its fetch took: another replica's, or one fetched here under the lease (with what
        the shared one held too, so that it serves every replica's queries)."""
        asked = self._clock()
        give_up = asked + MAX_WAIT_SECONDS
        try:
            while True:
                oldest = max(max_age, self._clock() - asked)
                found, _, leased = await self._look(needs, generation, oldest)
                if found is not None:
                    self.shared_hits += 1
                    snapshot, taken, took = found
                    return snapshot, self._clock() - taken, took
                if not leased:
                    token = secrets.token_hex(16)
                    if await self._take(token):
                        snapshot, taken, took = await self._under_lease(
                            token, needs, generation, oldest, fetch_own
                        )
                        return snapshot, self._clock() - taken, took
                if self._clock() >= give_up:
                    break  # renewed all this while, yet no snapshot: ask the head node ourselves
                await asyncio.sleep(WAIT_STEP)
        except SharedUnavailable:
            pass
        self.fetches += 1
        began = self._clock()
        snapshot = await fetch_own(needs)
        return snapshot, 0.0, self._clock() - began

    async def _under_lease(
        self,
        token: str,
        needs: Need,
        generation: int,
        oldest: float,
        fetch_own: Callable[[Need], Awaitable[Snapshot]],
    ) -> tuple[Snapshot, float, float]:
        """The snapshot found or fetched while holding the lease `token` (when its data was
        read, how long its fetch took), the lease renewed meanwhile and released after (also
        when the fetch fails or this task is cancelled)."""
        renewing = asyncio.ensure_future(self._keep(token))
        try:
            # Look again under the lease: another replica's whole fetch, store and release fit
            # between the look before and the take (measured: two squeues 5 ms apart, about
            # one refresh in ten under load).
            found, held, _ = await self._look(needs, generation, oldest)
            if found is not None:
                self.shared_hits += 1
                return found
            return await self._fetch_and_store(needs | held, generation, fetch_own)
        finally:
            # Not awaited: a cancellation of this task that came meanwhile must not be lost.
            renewing.cancel()
            await self._release(token)

    async def _keep(self, token: str) -> None:
        """Renew the lease RENEWALS times a lease until cancelled (the fetch is over), or until
        it is no longer ours (it lapsed: this loop stalled for most of a lease)."""
        client = self.state.client
        ms = str(int(self.lease * 1000))
        while True:
            await asyncio.sleep(self.lease / RENEWALS)
            try:
                kept = await self.state.call(
                    lambda: client.eval(_RENEW, 1, self.lease_key, token, ms)
                )
            except SharedUnavailable:
                return  # waiters find Redis gone too, and fetch alone
            if kept != 1:
                self.leases_lost += 1
                return

    async def peek(
        self, needs: Need, generation: int, max_age: float
    ) -> tuple[Snapshot, float, float] | None:
        """The shared snapshot and its age if it serves (never fetches, never waits): what a
        query for some jobs reads before asking the head node for them."""
        try:
            found, _, _ = await self._look(needs, generation, max_age)
        except SharedUnavailable:
            return None
        if found is None:
            return None
        self.shared_hits += 1
        snapshot, taken, took = found
        return snapshot, self._clock() - taken, took

    async def _look(
        self, needs: Need, generation: int, max_age: float
    ) -> tuple[tuple[Snapshot, float, float] | None, Need, bool]:
        """(the shared snapshot, when its data was read (this process's monotonic clock) and
        how long its fetch took, if it serves; what the shared one holds; whether the lease is
        held). Ages are turned into times where they are read, so that the time spent reading
        and decoding is counted."""
        client = self.state.client

        async def probe() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.pttl(self.snapshot_key)
                pipe.get(self.lease_key)
                pipe.pttl(self.lease_key)
                return list(await pipe.execute())

        remaining_ms, lease, lease_ms = await self.state.call(probe)
        leased = lease is not None and await self._a_lease(lease, lease_ms)
        if not isinstance(remaining_ms, int) or remaining_ms <= 0:
            return None, Need.NOTHING, bool(leased)
        age = max(0.0, self.ttl - remaining_ms / 1000)
        taken = self._clock() - age
        if age > max_age:
            return None, Need.NOTHING, bool(leased)
        raw, raw_took = await self.state.call(lambda: client.mget(self.snapshot_key, self.took_key))
        if not isinstance(raw, bytes):
            return None, Need.NOTHING, bool(leased)
        if self._encoded is not None and self._encoded[1] == raw:
            # The snapshot this replica stored or read last: the same bytes make the same
            # snapshot, so it is not decoded again (tens of ms of the event loop at 7,000 jobs,
            # paid by the poll leader when it takes up a query's fetch).
            snapshot, stored_generation = self._encoded[0], self._encoded_generation
        else:
            try:
                limit = self.state.max_bytes
                snapshot, stored_generation = (
                    decode(raw, self.cluster) if limit is None else decode(raw, self.cluster, limit)
                )
            except CorruptSharedValue as exc:
                self.state.refused(self.snapshot_key, exc)
                return None, Need.NOTHING, bool(leased)
        if stored_generation != generation:
            return None, Need.NOTHING, bool(leased)
        if needs not in snapshot.needs:
            return None, snapshot.needs, bool(leased)
        self._encoded, self._encoded_generation = (snapshot, raw), stored_generation
        return (snapshot, taken, self._took(raw_took)), snapshot.needs, bool(leased)

    def encoded(self, snapshot: Snapshot) -> bytes | None:
        """`snapshot` as shared_codec encoded it, if it is the one this replica last stored or
        read (its generation field holds the write generation, which readers of a poll's
        publication ignore: the publication is fenced by the leader's lease and epoch)."""
        if self._encoded is not None and self._encoded[0] is snapshot:
            return self._encoded[1]
        return None

    def _took(self, raw: object) -> float:
        """The stored fetch duration in seconds; 0 for a value that is not one (planted, or
        lost): the replica then refreshes a TTL after the data was read, which never makes
        more than one fetch per TTL, only a reader wait for the next one."""
        if raw is None:
            return 0.0
        if isinstance(raw, bytes) and raw.isdigit() and len(raw) < 10:
            return min(int(raw) / 1000, self.ttl)
        self.state.refused(self.took_key, CorruptSharedValue("not a duration"))
        return 0.0

    async def _a_lease(self, value: object, remaining_ms: object) -> bool:
        """Whether `value` (held `remaining_ms` more) is a lease a replica took: a token that
        expires within MAX_LEASE_SECONDS. Anything else (planted, or left by another program)
        would hold every reader until it expired, or forever: it is deleted, if unchanged."""
        if (
            isinstance(value, bytes)
            and _is_token(value)
            and isinstance(remaining_ms, int)
            and 0 < remaining_ms <= MAX_LEASE_SECONDS * 1000
        ):
            return True
        if remaining_ms == -2 or not isinstance(value, bytes):  # gone since the GET
            return False
        self.state.refused(self.lease_key, CorruptSharedValue("not a fetch lease: deleted"))
        client = self.state.client
        await self.state.call(lambda: client.eval(_RELEASE, 1, self.lease_key, value))
        return False

    async def _take(self, token: str) -> bool:
        client = self.state.client
        px = int(self.lease * 1000)
        return bool(
            await self.state.call(lambda: client.set(self.lease_key, token, nx=True, px=px))
        )

    async def _release(self, token: str) -> None:
        client = self.state.client
        with contextlib.suppress(SharedUnavailable):  # else the lease expires by itself
            await self.state.call(lambda: client.eval(_RELEASE, 1, self.lease_key, token))

    async def _fetch_and_store(
        self, needs: Need, generation: int, fetch_own: Callable[[Need], Awaitable[Snapshot]]
    ) -> tuple[Snapshot, float, float]:
        """The snapshot fetched here, when its fetch ended (monotonic: when its data was read)
        and how long it took, stored in Redis to expire a TTL after that end (measured after
        encoding it, which a large queue makes take a while), so that other replicas read its
        true age, with its duration beside it."""
        started = self._clock()
        self.fetches += 1
        snapshot = await fetch_own(needs)
        ended = self._clock()
        value = encode(snapshot, generation)
        self._encoded, self._encoded_generation = (snapshot, value), generation
        keep_ms = int((self.ttl - (self._clock() - ended)) * 1000)
        if keep_ms > 0:
            client = self.state.client
            took_ms = str(int((ended - started) * 1000))
            with contextlib.suppress(SharedUnavailable):  # else served here all the same
                await self.state.call(
                    lambda: client.eval(
                        _STORE,
                        3,
                        self.snapshot_key,
                        self.generation_key,
                        self.took_key,
                        str(generation),
                        value,
                        str(keep_ms),
                        took_ms,
                    )
                )
        return snapshot, ended, ended - started


def fetch_lease(ttl: float, interval: float) -> float:
    """How long a fetch lease lasts (seconds) for a cache `ttl` and a poll `interval`."""
    return min(MAX_LEASE_SECONDS, max(LEASE_FLOOR, LEASE_INTERVALS * min(ttl, interval)))


def _is_token(value: bytes) -> bool:
    """What secrets.token_hex(16) makes: 32 lowercase hexadecimal digits."""
    return len(value) == 32 and all(c in b"0123456789abcdef" for c in value)
