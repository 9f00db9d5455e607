"""Snapshot sources on the real cluster: shared fetches, TTL, refresh ahead, invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from resolvers.snapshot import Need
from resolvers.source import SnapshotSource
from tests.support.counting import CountingTransport
from transport.base import Command, CommandResult
from transport.local import LocalTransport


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_requests_share_one_fetch(slurm_cluster: str) -> None:
    """Ten requests at once for the same data cost one transport call."""
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=0.0)
    snapshots = await asyncio.gather(*(source.get(Need.NODES) for _ in range(10)))
    assert transport.calls == 1
    assert all(s is snapshots[0] for s in snapshots)


async def test_a_snapshot_is_reused_within_its_ttl_only(slurm_cluster: str) -> None:
    """Within the TTL a covered request costs nothing; past it, or after invalidate, it fetches."""
    clock = Clock()
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=10.0, clock=clock)
    first = await source.get(Need.NODES | Need.PARTITIONS)
    clock.now += 2
    assert await source.get(Need.NODES) is first
    assert transport.calls == 1
    clock.now += 20
    assert await source.get(Need.NODES) is not first
    assert transport.calls == 2
    source.invalidate()
    await source.get(Need.NODES)
    assert transport.calls == 3


async def test_a_wider_request_widens_the_next_fetch(slurm_cluster: str) -> None:
    """A request needing more than the cached snapshot fetches the union, so both are served."""
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=60.0)
    await source.get(Need.NODES)
    wider = await source.get(Need.JOBS)
    assert Need.NODES | Need.JOBS in wider.needs
    assert await source.get(Need.NODES) is wider
    assert transport.calls == 2


async def test_past_half_its_ttl_a_snapshot_is_refreshed_in_the_background(
    slurm_cluster: str,
) -> None:
    """The request is served the current snapshot at once; the next sees the refreshed one."""
    clock = Clock()
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=10.0, clock=clock)
    first = await source.get(Need.NODES)
    clock.now += 6
    assert await source.get(Need.NODES) is first
    for _ in range(200):  # the background refresh runs real scontrol; give it time
        if source.fresh() is not first:
            break
        await asyncio.sleep(0.05)
    refreshed = await source.get(Need.NODES)
    assert refreshed is not first
    assert transport.calls == 2
    await source.aclose()


class SlowTransport(CountingTransport):
    """The real cluster, each round trip taking `seconds` more of the test's clock: a head
    node too busy to answer within half the TTL."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__(LocalTransport())
        self._clock, self._seconds = clock, seconds

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        results = await super().run(commands)
        self._clock.now += self._seconds
        return results


async def test_a_slow_fetch_is_refreshed_early_enough_to_arrive_in_time(
    slurm_cluster: str,
) -> None:
    """When fetches take 48 % of the TTL, a snapshot arrives 4.8 s old (TTL 10 s): the refresh
    ahead starts at once, not at half the TTL, so that the next arrives before this one expires
    and requests meanwhile are served from the cache (not each a fetch of its own)."""
    clock = Clock()
    transport = SlowTransport(clock, 4.8)
    source = SnapshotSource("local", transport, ttl=10.0, clock=clock)
    first = await source.get(Need.NODES)
    assert transport.calls == 1
    assert await source.get(Need.NODES) is first  # 4.8 s old: still fresh, and a refresh starts
    for _ in range(200):
        if transport.calls == 2 and source.fresh() is not first:
            break
        await asyncio.sleep(0.05)
    assert transport.calls == 2
    refreshed = source.fresh()
    assert refreshed is not None and refreshed is not first  # arrived 9.6 s after the first
    await source.aclose()


async def test_hits_in_one_turn_of_the_loop_start_one_refresh(slurm_cluster: str) -> None:
    """Requests served from the cache past its refresh point, before the event loop has run the
    refresh they started, start no more: one whole-queue fetch, not one per request."""
    clock = Clock()
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=10.0, clock=clock)
    first = await source.get(Need.NODES)
    clock.now += 6
    for _ in range(20):  # a hit never suspends: all of them run before the refresh starts
        assert await source.get(Need.NODES) is first
    for _ in range(200):
        if source.fresh() is not first:
            break
        await asyncio.sleep(0.05)
    assert source.fresh() is not first
    assert transport.calls == 2
    await source.aclose()
