"""The fetch lease across replicas (resolvers/shared.py) on a real redis-server and the real
cluster: a replica that finds no fresh snapshot and takes the lease looks again before asking
the head node, since another replica's whole fetch may land between its look and its take."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resolvers.shared import SharedSnapshots
from resolvers.snapshot import Need, Snapshot, fetch_snapshot
from server.shared_state import open_shared_state
from tests.support.counting import CountingTransport
from tests.support.redis_server import RedisServer
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster


class BeforeTake:
    """The real Redis client, except that its first SET (the lease's SET NX) first runs
    `meanwhile`: another replica's fetch falling exactly between a look and a take."""

    def __init__(self, client: Any, meanwhile: Callable[[], Awaitable[object]]) -> None:
        self._client = client
        self._meanwhile: Callable[[], Awaitable[object]] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def set(self, *args: Any, **kwargs: Any) -> Any:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile()
        return await self._client.set(*args, **kwargs)


async def test_a_fetch_landing_between_look_and_take_is_used_not_repeated(
    redis_server: RedisServer,
) -> None:
    """Replica B looks (nothing fresh, no lease), then A fetches, stores and releases, then B
    takes the free lease: B serves A's snapshot, and the head node saw one squeue."""
    transports = {
        "a": CountingTransport(LocalTransport()),
        "b": CountingTransport(LocalTransport()),
    }

    def fetcher(name: str) -> Callable[[Need], Awaitable[Snapshot]]:
        async def fetch(needs: Need) -> Snapshot:
            return await fetch_snapshot("local", transports[name], needs)

        return fetch

    state_a = await open_shared_state(redis_server.url)
    state_b = await open_shared_state(redis_server.url)
    try:
        a = SharedSnapshots(state_a, "local", 60.0)
        b = SharedSnapshots(state_b, "local", 60.0)
        generation = await a.generation()
        assert generation is not None and await b.generation() == generation

        async def a_fetches() -> object:
            return await a.fetch(Need.JOBS, generation, 30.0, fetcher("a"))

        # A proxy with Redis' whole interface (it forwards what it does not define).
        state_b.client = BeforeTake(state_b.client, a_fetches)  # type: ignore[assignment]
        snapshot, age, _ = await b.fetch(Need.JOBS, generation, 30.0, fetcher("b"))
    finally:
        await state_a.aclose()
        await state_b.aclose()
    assert transports["a"].calls == 1
    assert transports["b"].calls == 0, transports["b"].batches
    assert snapshot.needs & Need.JOBS and 0 <= age < 30
    assert (a.fetches, b.fetches, b.shared_hits) == (1, 0, 1)
