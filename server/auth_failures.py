"""Failed authentications, counted per client address, so that guessing tokens is not free.

A presented credential that proves nothing (an unknown token, a forged JWT, in an
`Authorization` header or a WebSocket's `connection_init` payload) is a failure; a request that
presents none is not, nor is a JWT its issuer signed that has expired (nobody guesses one: it is
a client whose token lapsed, and it must not be locked out when it comes back with a fresh one).

An address may fail `per_minute` times in a window of a minute that its first failure opens;
past that, it is blocked until the window ends: HTTP requests get 429 with Retry-After,
WebSocket connections are closed with 4429, and that holds even for a correct token, so a
guesser cannot tell a hit from a miss while it is blocked. A failure is logged with the address
and the count, never with what was presented.

Authentication runs before the per-identity rate limit (server/channel_limits.py) because that
limit is keyed by who the caller is; this count is what bounds a caller nobody knows yet.

The counts live in the app (one per process, like the rate limit): N replicas allow N times the
figure. Windows are kept in an LRU of at most `max_keys` addresses; one forgotten starts again.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

logger = logging.getLogger("slurm_graphql.auth")

WINDOW_SECONDS = 60.0
DEFAULT_PER_MINUTE = 10
DEFAULT_MAX_KEYS = 10_000


@dataclass
class _Window:
    opened: float
    failures: int


class AuthFailures:
    """`failed(address)` counts one failure; `retry_after(address)` is how long it is blocked."""

    def __init__(
        self,
        per_minute: int = DEFAULT_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self.per_minute = max(1, per_minute)
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def _current(self, address: str, now: float) -> _Window | None:
        found = self._windows.get(address)
        if found is not None and now - found.opened >= self.window:
            del self._windows[address]
            return None
        return found

    def retry_after(self, address: str) -> float:
        """0 when `address` may try; else the seconds until its window ends."""
        now = self._clock()
        found = self._current(address, now)
        if found is None or found.failures < self.per_minute:
            return 0.0
        return max(0.0, found.opened + self.window - now)

    def failed(self, address: str, channel: str) -> None:
        """Count a failure of `address` (on `channel`: http, websocket) and log it."""
        now = self._clock()
        found = self._current(address, now)
        if found is None:
            found = self._windows[address] = _Window(now, 0)
            if len(self._windows) > self._max_keys:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(address)
        found.failures += 1
        blocked = found.failures >= self.per_minute
        logger.warning(
            "authentication failed from %s over %s (%d in this minute%s)",
            address or "an unknown address",
            channel,
            found.failures,
            ", now blocked" if blocked else "",
        )


def blocked_error(wait: float) -> dict[str, Any]:
    seconds = max(1, math.ceil(wait))
    return {
        "message": f"too many failed authentications from this address: retry in {seconds} s",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    }


def blocked_response(wait: float) -> JSONResponse:
    """429 with Retry-After in whole seconds, at least 1."""
    error = blocked_error(wait)
    return JSONResponse(
        {"errors": [error]},
        status_code=429,
        headers={"Retry-After": str(error["extensions"]["retryAfter"])},
    )


__all__ = ["AuthFailures", "blocked_error", "blocked_response"]
