"""The per-identity rate limit held across replicas (SLURM_GRAPHQL_REDIS_URL): one token bucket
per key in Redis, spent by an atomic script on Redis' own clock, so N replicas together admit
`rate` requests a second per identity, not N times that. Redis not answering, each replica falls
back to its own bucket (server/rate_limit.py), as it would alone.

Keys are `<namespace>:rate:<sha256 of the limit key>`: a client's name or address never becomes
part of a key as written, and every key has the same length, however long the name. A bucket
expires once it would be full again, so idle identities leave nothing behind.

The per-identity stream cap (SLURM_GRAPHQL_MAX_SUBSCRIPTIONS_PER_USER) is held the same way:
`<namespace>:streams:<sha256>`, a sorted set of leased slots (StreamSlots, SharedStreams).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets

from resolvers.shared import SharedState, SharedUnavailable
from server.slots import Slots

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(held[1])
local updated = tonumber(held[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimit:
    def __init__(self, state: SharedState, rate: float, burst: int) -> None:
        self.state = state
        self.rate = rate
        self.burst = max(1, burst)

    def key(self, limit_key: str) -> str:
        digest = hashlib.sha256(limit_key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.state.namespace}:rate:{digest}"

    async def take(self, limit_key: str) -> float | None:
        """0 when allowed, else seconds until a token is back; None when Redis does not answer
        (the caller spends its own bucket)."""
        client = self.state.client
        key = self.key(limit_key)
        try:
            raw = await self.state.call(
                lambda: client.eval(_TAKE, 1, key, repr(self.rate), str(self.burst))
            )
        except SharedUnavailable:
            return None
        try:
            wait = float(raw)
        except (TypeError, ValueError):
            return None
        return wait if 0.0 <= wait < 1e9 else None


# Streams (subscriptions) an identity holds across replicas: a sorted set per limit key, one
# member per stream scored by its lease's end on Redis' clock. A replica renews its members
# every STREAM_LEASE_MS / 3; a replica that died holds nothing once its leases ran out.
STREAM_LEASE_MS = 30_000
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RENEW = """
local clock = redis.call('TIME')
local until_ = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class SharedStreams:
    """The per-identity stream cap in Redis; every call answers None when Redis does not (the
    caller then counts in its own process)."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self._held: dict[str, set[str]] = {}  # Redis key -> members this replica holds
        self._tasks: set[asyncio.Task[None]] = set()

    def key(self, limit_key: str) -> str:
        digest = hashlib.sha256(limit_key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.state.namespace}:streams:{digest}"

    async def acquire(self, limit_key: str, limit: int) -> str | None:
        """A member naming the slot taken; "" when `limit` are held already; None: no Redis."""
        client = self.state.client
        key = self.key(limit_key)
        member = f"{self.state.replica}:{secrets.token_hex(8)}"
        try:
            taken = await self.state.call(
                lambda: client.eval(_ACQUIRE, 1, key, str(limit), str(STREAM_LEASE_MS), member)
            )
        except SharedUnavailable:
            return None
        if taken != 1:
            return ""
        self._held.setdefault(key, set()).add(member)
        return member

    def release(self, limit_key: str, member: str) -> None:
        """Give the slot back (in the background: its lease ends it anyway)."""
        key = self.key(limit_key)
        members = self._held.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._held[key]
        client = self.state.client

        async def remove() -> None:
            with contextlib.suppress(SharedUnavailable):
                await self.state.call(lambda: client.zrem(key, member))

        task = asyncio.ensure_future(remove())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def renew_forever(self) -> None:
        """Extend the leases of every slot this replica holds, every third of a lease."""
        client = self.state.client
        while True:
            await asyncio.sleep(STREAM_LEASE_MS / 3000)
            for key, members in list(self._held.items()):
                held = sorted(members)

                async def renew(key: str = key, held: list[str] = held) -> object:
                    return await client.eval(_RENEW, 1, key, str(STREAM_LEASE_MS), *held)

                with contextlib.suppress(SharedUnavailable):
                    await self.state.call(renew)


class StreamSlots:
    """Streams per key, at most `limit`: across replicas while Redis answers (`shared`), else in
    this process (`local`). Each slot is released the way it was taken."""

    def __init__(self, local: Slots) -> None:
        self.local = local
        self.shared: SharedStreams | None = None
        self._taken: dict[str, list[str | None]] = {}  # key -> Redis members, None: local

    @property
    def limit(self) -> int:
        return self.local.limit

    async def acquire(self, key: str) -> bool:
        member = None
        if self.shared is not None:
            member = await self.shared.acquire(key, self.local.limit)
            if member == "":
                return False
        if member is None and not self.local.acquire(key):
            return False
        self._taken.setdefault(key, []).append(member)
        return True

    def release(self, key: str) -> None:
        taken = self._taken.get(key)
        if not taken:
            return
        member = taken.pop()
        if not taken:
            del self._taken[key]
        if member is None:
            self.local.release(key)
        elif self.shared is not None:
            self.shared.release(key, member)

    def held(self, key: str) -> int:
        return len(self._taken.get(key, ()))
