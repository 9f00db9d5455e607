"""Where snapshots come from for one cluster: coalesced fetches and a short-lived cache.

Concurrent requests that need the same data share one transport call (single flight), and a
snapshot younger than `ttl` seconds that covers what a request needs is served again. With many
readers, the controller sees one squeue per TTL instead of one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from resolvers.snapshot import Need, Snapshot, fetch_snapshot
from transport.base import Transport


class SnapshotSource:
    def __init__(
        self,
        cluster: str,
        transport: Transport,
        *,
        ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.transport = transport
        self.ttl = ttl
        self._clock = clock
        self._latest: tuple[float, Snapshot] | None = None
        self._in_flight: dict[Need, asyncio.Future[Snapshot]] = {}
        self.fetches = 0  # transport calls made, for metrics and tests

    async def get(self, needs: Need) -> Snapshot:
        """A snapshot holding at least `needs`, fresh within the TTL."""
        if not needs:
            return Snapshot(cluster=self.cluster, taken_at=time.time(), needs=needs)
        if self._latest is not None:
            taken, snapshot = self._latest
            if needs in snapshot.needs and self._clock() - taken <= self.ttl:
                return snapshot
        for pending_needs, pending in self._in_flight.items():
            if needs in pending_needs:
                return await asyncio.shield(pending)
        return await self._fetch(needs)

    def invalidate(self) -> None:
        """Forget the cached snapshot (after a write, so the writer reads what it did)."""
        self._latest = None

    async def _fetch(self, needs: Need) -> Snapshot:
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._in_flight[needs] = future
        started = self._clock()
        try:
            self.fetches += 1
            snapshot = await fetch_snapshot(self.cluster, self.transport, needs)
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting: mark the exception retrieved to keep asyncio quiet.
            future.exception()
            raise
        finally:
            del self._in_flight[needs]
        future.set_result(snapshot)
        if self._latest is None or self._latest[0] <= started:
            self._latest = (started, snapshot)
        return snapshot
