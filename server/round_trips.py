"""A transport wrapper that reports every round trip: to the request that made it (its log line
counts them), to readiness (the cluster answered) and to the metrics (latency by backend).

It keeps the Transport protocol, so the snapshot sources and the poller use it unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.observe import current_request
from transport import Command, CommandResult, Transport


@dataclass(frozen=True)
class RoundTrip:
    cluster: str
    backend: str  # the URL scheme: local, ssm, …
    seconds: float
    error: Exception | None  # None when the head node answered (whatever the commands' exits)
    results: tuple[CommandResult, ...] = ()


RoundTripListener = Callable[[RoundTrip], None]


class WatchedTransport:
    def __init__(
        self, inner: Transport, cluster: str, listeners: Sequence[RoundTripListener]
    ) -> None:
        self.inner = inner
        self.cluster = cluster
        self.backend = urlsplit(inner.url).scheme or "unknown"
        self._listeners = tuple(listeners)

    @property
    def url(self) -> str:
        return self.inner.url

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        record = current_request.get()
        if record is not None:
            record.transport_calls += 1
        started = time.perf_counter()
        try:
            results = await self.inner.run(commands)
        except Exception as exc:
            # A cancelled call (a BaseException) says nothing about the head node: not reported.
            self._report(RoundTrip(self.cluster, self.backend, self._since(started), exc))
            raise
        self._report(
            RoundTrip(self.cluster, self.backend, self._since(started), None, tuple(results))
        )
        return results

    async def aclose(self) -> None:
        # The app closes the transports it opened itself; the wrapper owns nothing.
        return None

    @staticmethod
    def _since(started: float) -> float:
        return time.perf_counter() - started

    def _report(self, trip: RoundTrip) -> None:
        for listener in self._listeners:
            listener(trip)
