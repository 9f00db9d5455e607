"""Snapshots shared by every replica through Redis (SLURM_GRAPHQL_REDIS_URL).

Per cluster, three keys, all under the service's namespace and the cluster's hash tag (one
cluster slot, so the scripts below also run on a clustered cache):

    <namespace>:{<cluster>}:snapshot     the latest full snapshot (resolvers/shared_codec.py),
                                         expiring after the cache TTL
    <namespace>:{<cluster>}:lease        who is fetching one now: a random token, SET NX PX
    <namespace>:{<cluster>}:generation   bumped by every write, on any replica

No key holds anything a client wrote: cluster names come from the configuration, and the values
are what this service fetched from Slurm. A replica that misses reads the snapshot; if there is
none fresh enough, it takes the lease and fetches, or, when another replica holds it, waits for
that replica's snapshot (at most LEASE_SECONDS) and fetches itself if none comes (the holder
died). So concurrent misses across replicas cost the head node one round trip. A write bumps
the generation and drops the snapshot; a replica compares the generation on each request and
forgets what it cached before, so a write on one replica is read back on every other.

Redis failing never fails a request: the call that fails marks Redis down (logged once, counted
for /metrics, named in /readyz), the replica serves from its own cache as it would alone, and
one call a second tries Redis again until it answers.
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
from transport.errors import SlurmGraphQLError

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("slurm_graphql.shared")

NAMESPACE = "slurm-graphql"
# The most a fetch may hold the lease, and so the most a waiter waits for its holder.
LEASE_SECONDS = 5.0
# How often a waiter looks whether the holder's snapshot has come.
WAIT_STEP = 0.01
# Once Redis failed, how long replicas act alone before trying it again.
RETRY_AFTER = 1.0

# Keep a snapshot only if no write came since its fetch started (KEYS: snapshot, generation).
_STORE = """
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# Drop the lease only if it is still ours (KEYS: lease).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A write: a new generation, and no snapshot of the old one (KEYS: generation, snapshot).
# A generation starts at the server's clock in microseconds, not at 1, so that a Redis restarted
# empty never hands out again a number replicas saw before it went.
_BUMP = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], now[1] .. string.format('%06d', now[2]))
end
local generation = redis.call('INCR', KEYS[1])
redis.call('DEL', KEYS[2])
return generation
"""

T = TypeVar("T")


class SharedUnavailable(SlurmGraphQLError):
    """Redis did not answer (or answered nonsense); the caller acts alone. Never leaves this
    module's callers: it is caught where the replica falls back."""


class SharedState:
    """The Redis client of one app and whether Redis is answering."""

    def __init__(
        self,
        client: Redis,
        namespace: str = NAMESPACE,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.max_bytes = max_bytes
        # Names this replica where replicas say what they need (resolvers/shared_poll.py).
        self.replica = secrets.token_hex(8)
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0
        # Read by /metrics and /readyz.
        self.failures = 0  # calls that failed, each making this replica act alone
        self.corrupt = 0  # values read back and refused

    @property
    def up(self) -> bool:
        return self._down_since is None

    def available(self) -> bool:
        """Whether to ask Redis now: always while it answers; once a second while it does not."""
        if self._down_since is None:
            return True
        if self._clock() >= self._retry_at:
            self._retry_at = self._clock() + RETRY_AFTER
            return True
        return False

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()`'s result; SharedUnavailable (and Redis marked down) if Redis fails."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        if not self.available():
            raise SharedUnavailable
        try:
            try:
                result = await make()
            except RedisConnectionError:
                # Once: a pooled connection to a Redis that restarted fails its first command
                # (and is dropped); a new one answers if Redis is there.
                result = await make()
        except (TimeoutError, RedisError, OSError) as exc:
            self.failures += 1
            if self._down_since is None:
                self._down_since = self._clock()
                self._retry_at = self._down_since + RETRY_AFTER
                # Once per outage; the class names the failure without its text (which may
                # carry the URL).
                logger.warning(
                    "Redis unreachable (%s): each replica uses its own cache until it answers",
                    type(exc).__name__,
                )
            raise SharedUnavailable from None
        if self._down_since is not None:
            logger.warning("Redis answers again: replicas share snapshots again")
            self._down_since = None
        return result

    def refused(self, key: str, exc: CorruptSharedValue) -> None:
        self.corrupt += 1
        logger.warning("ignored the value of %s in Redis: %s", key, exc)

    async def aclose(self) -> None:
        await self.client.aclose()


class SharedSnapshots:
    """One cluster's full snapshots in Redis."""

    def __init__(self, state: SharedState, cluster: str, ttl: float) -> None:
        self.state = state
        self.cluster = cluster
        self.ttl = ttl
        prefix = f"{state.namespace}:{{{cluster}}}"
        self.snapshot_key = f"{prefix}:snapshot"
        self.lease_key = f"{prefix}:lease"
        self.generation_key = f"{prefix}:generation"
        self._clock = time.monotonic
        # Counters for /metrics: snapshots another replica fetched, and fetches of our own.
        self.shared_hits = 0
        self.fetches = 0

    async def generation(self) -> int | None:
        """The cluster's write generation; None when Redis is not answering."""
        try:
            raw = await self.state.call(lambda: self.state.client.get(self.generation_key))
        except SharedUnavailable:
            return None
        if raw is None:
            return 0
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
            return None
        return raw if isinstance(raw, int) else None

    async def fetch(
        self,
        needs: Need,
        generation: int,
        max_age: float,
        fetch_own: Callable[[Need], Awaitable[Snapshot]],
    ) -> tuple[Snapshot, float]:
        """A snapshot holding `needs` of `generation` at most `max_age` seconds old (or taken
        since this call began), and its age: another replica's, or one fetched here under the
        lease (with what the shared one held too, so that it serves every replica's queries)."""
        asked = self._clock()
        deadline = asked + LEASE_SECONDS
        try:
            while True:
                oldest = max(max_age, self._clock() - asked)
                found, held, leased = await self._look(needs, generation, oldest)
                if found is not None:
                    self.shared_hits += 1
                    return found
                if not leased:
                    token = secrets.token_hex(16)
                    if await self._take(token):
                        try:
                            return await self._fetch_and_store(needs | held, generation, fetch_own)
                        finally:
                            await self._release(token)
                if self._clock() >= deadline:
                    break  # the holder died or hangs: ask the head node ourselves
                await asyncio.sleep(WAIT_STEP)
        except SharedUnavailable:
            pass
        self.fetches += 1
        return await fetch_own(needs), 0.0

    async def peek(
        self, needs: Need, generation: int, max_age: float
    ) -> tuple[Snapshot, float] | None:
        """The shared snapshot and its age if it serves (never fetches, never waits): what a
        query for some jobs reads before asking the head node for them."""
        try:
            found, _, _ = await self._look(needs, generation, max_age)
        except SharedUnavailable:
            return None
        if found is not None:
            self.shared_hits += 1
        return found

    async def _look(
        self, needs: Need, generation: int, max_age: float
    ) -> tuple[tuple[Snapshot, float] | None, Need, bool]:
        """(the shared snapshot and its age if it serves, what the shared one holds, whether
        the lease is held)."""
        client = self.state.client

        async def probe() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.pttl(self.snapshot_key)
                pipe.exists(self.lease_key)
                return list(await pipe.execute())

        remaining_ms, leased = await self.state.call(probe)
        if not isinstance(remaining_ms, int) or remaining_ms <= 0:
            return None, Need.NOTHING, bool(leased)
        age = max(0.0, self.ttl - remaining_ms / 1000)
        if age > max_age:
            return None, Need.NOTHING, bool(leased)
        raw = await self.state.call(lambda: client.get(self.snapshot_key))
        if not isinstance(raw, bytes):
            return None, Need.NOTHING, bool(leased)
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
        return (snapshot, age), snapshot.needs, bool(leased)

    async def _take(self, token: str) -> bool:
        client = self.state.client
        px = int(LEASE_SECONDS * 1000)
        return bool(
            await self.state.call(lambda: client.set(self.lease_key, token, nx=True, px=px))
        )

    async def _release(self, token: str) -> None:
        client = self.state.client
        with contextlib.suppress(SharedUnavailable):  # else the lease expires by itself
            await self.state.call(lambda: client.eval(_RELEASE, 1, self.lease_key, token))

    async def _fetch_and_store(
        self, needs: Need, generation: int, fetch_own: Callable[[Need], Awaitable[Snapshot]]
    ) -> tuple[Snapshot, float]:
        started = self._clock()
        self.fetches += 1
        snapshot = await fetch_own(needs)
        age = self._clock() - started
        keep_ms = int((self.ttl - age) * 1000)
        if keep_ms > 0:
            value = encode(snapshot, generation)
            client = self.state.client
            with contextlib.suppress(SharedUnavailable):  # else served here all the same
                await self.state.call(
                    lambda: client.eval(
                        _STORE,
                        2,
                        self.snapshot_key,
                        self.generation_key,
                        str(generation),
                        value,
                        str(keep_ms),
                    )
                )
        return snapshot, age
