"""The response cache never keeps a snapshot alive that its source no longer serves (issue 18)."""

from __future__ import annotations

import gc
import weakref

from strawberry.types import ExecutionResult

from resolvers.snapshot import Need
from resolvers.source import SnapshotSource
from server.response_cache import ResponseCache
from transport.local import LocalTransport


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_stale_entry_does_not_pin_its_snapshot(slurm_cluster: str) -> None:
    """Storing a result from a newer snapshot drops entries of older ones, so they can be freed."""
    clock = Clock()
    transport = LocalTransport()
    source = SnapshotSource("local", transport, ttl=1.0, clock=clock)
    cache = ResponseCache({"local": source})
    try:
        await stale_entry_dropped(source, cache, clock)
    finally:
        await transport.aclose()


async def stale_entry_dropped(source: SnapshotSource, cache: ResponseCache, clock: Clock) -> None:
    old = await source.get(Need.NODES)
    cache.put(("nodes", "alice"), ExecutionResult(data={"n": 1}, errors=None), (old,), jobs=0)
    freed = weakref.ref(old)
    del old

    clock.now += 2  # past the TTL: the next request fetches a new snapshot
    new = await source.get(Need.NODES)
    cache.put(("nodes", "bob"), ExecutionResult(data={"n": 2}, errors=None), (new,), jobs=0)

    assert len(cache) == 1
    gc.collect()
    assert freed() is None, "the stale snapshot is still referenced"
    assert cache.get(("nodes", "bob")) is not None


async def test_entries_of_the_served_snapshot_stay(slurm_cluster: str) -> None:
    """Within the TTL every entry of the snapshot being served is kept and answered."""
    transport = LocalTransport()
    source = SnapshotSource("local", transport, ttl=60.0)
    cache = ResponseCache({"local": source})
    try:
        snapshot = await source.get(Need.NODES)
    finally:
        await transport.aclose()
    for name in ("a", "b", "c"):
        cache.put((name,), ExecutionResult(data={}, errors=None), (snapshot,), jobs=0)
    assert len(cache) == 3
    assert all(cache.get((name,)) is not None for name in ("a", "b", "c"))
