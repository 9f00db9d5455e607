"""The per-identity rate limit held across replicas (SLURM_GRAPHQL_REDIS_URL): one token bucket
per key in Redis, spent by an atomic script on Redis' own clock, so N replicas together admit
`rate` requests a second per identity, not N times that. Redis not answering, each replica falls
back to its own bucket (server/rate_limit.py), as it would alone.

Keys are `<namespace>:rate:<sha256 of the limit key>`: a client's name or address never becomes
part of a key as written, and every key has the same length, however long the name. A bucket
expires once it would be full again, so idle identities leave nothing behind.
"""

from __future__ import annotations

import hashlib

from resolvers.shared import SharedState, SharedUnavailable

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
