"""The Redis client behind shared snapshots (resolvers/shared.py), made in the app's lifespan
from SLURM_GRAPHQL_REDIS_URL: pooled, with short timeouts and no retries of its own, so that a
Redis that stops answering costs a request at most one timeout before the replica acts alone.

The pool makes a burst wait for a connection (300 subscriptions taking their stream slots at
once) rather than fail: a full pool is this replica being busy, not Redis being down, and
taking it for an outage made replicas fetch alone (bench/replicas.py saw MaxConnectionsError).

At start-up one PING tells a wrong password (a configuration error: the server does not start)
from a Redis that is not there yet (the documented fallback: start alone, share once it answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from resolvers.shared import SharedState, SharedUnavailable
from server.settings_error import SettingsError

logger = logging.getLogger("slurm_graphql.shared")

# Seconds to connect, and to wait for one answer. Redis answers in well under a millisecond,
# but a loaded replica's event loop may not look at the socket for a while: at 0.5 s, replicas
# of bench/replicas.py (300 subscribers each on 2 busy cores) took their own lag for an outage.
SOCKET_TIMEOUT = 2.0
MAX_CONNECTIONS = 64
# Seconds a call waits for a pooled connection before the replica acts alone.
POOL_WAIT = 2.0


async def open_shared_state(url: str) -> SharedState:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import AuthenticationError, ResponseError

    pool = BlockingConnectionPool.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        decode_responses=False,
    )
    client = Redis.from_pool(pool)
    state = SharedState(client)
    try:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await client.ping()
    except AuthenticationError:
        await client.aclose()
        raise SettingsError("SLURM_GRAPHQL_REDIS_URL: Redis refused the credentials") from None
    except ResponseError as exc:
        await client.aclose()
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise SettingsError(
                "SLURM_GRAPHQL_REDIS_URL: Redis asks for a password the URL does not give"
            ) from None
        raise SettingsError("SLURM_GRAPHQL_REDIS_URL: Redis refused PING") from None
    except Exception:
        # Not there yet: start alone (logged once), and share as soon as it answers.
        with contextlib.suppress(SharedUnavailable):
            await state.call(_fail)
    return state


async def _fail() -> None:
    raise ConnectionError("no answer at start-up")
