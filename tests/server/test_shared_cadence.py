"""How often replicas sharing snapshots through a real redis-server ask the real cluster under a
steady query load (resolvers/source.py, resolvers/shared.py): at most one squeue per cache TTL
for all of them together, start to start, while readers are still served from a snapshot.
Three real serve processes; their squeue runs are counted where they run (the PATH wrapper of
tests/support/squeue_counter.py). Refreshing at 0.9 of a snapshot's age cost 1.09-1.11 per TTL
(bench/replicas.py). A value planted beside the shared snapshot is refused."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
import redis

from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.live import StampingTransport
from tests.support.redis_server import RedisServer
from tests.support.scenario import Scenario
from tests.support.server import Replica, running_servers
from tests.support.squeue_counter import SqueueCounter
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

LISTING = "{ cluster { jobs(first: 50) { totalCount edges { node { jobId state } } } } }"
ALICE = {"Authorization": "Bearer alice-token"}
TOOK_KEY = "slurm-graphql:{local}:snapshot-took"
TTL = 0.5
SECONDS = 8.0  # 16 TTLs: at 1.1 per TTL, about 17.6 squeues where at most 16.5 pass
CLIENTS = 4  # per replica


async def test_three_replicas_under_a_query_load_fetch_at_most_once_per_ttl(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """Three serve processes, four clients each asking in a loop: the squeues of all three are
    at most one per TTL, start to start (half a TTL of slack for the wrapper's own start-up
    jitter at both ends of the window), and the snapshot keeps being refreshed."""
    counter = SqueueCounter()
    environ = {
        "SLURM_GRAPHQL_REDIS_URL": redis_server.url,
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_CACHE_TTL": str(TTL),
        "SLURM_GRAPHQL_RESPONSE_CACHE": "0",
        "SLURM_GRAPHQL_LOG_LEVEL": "warning",
        **counter.path_environ(),
    }
    stop = asyncio.Event()
    answered = [0]

    async def reader(replica: Replica) -> None:
        async with httpx.AsyncClient(base_url=replica.url, timeout=60, headers=ALICE) as client:
            while not stop.is_set():
                response = await client.post("/graphql", json={"query": LISTING})
                assert response.status_code == 200, response.text
                assert "errors" not in response.json(), response.text
                answered[0] += 1

    try:
        with running_servers(3, environ) as replicas:
            pids = {replica.pid for replica in replicas}
            readers = [asyncio.create_task(reader(r)) for r in replicas for _ in range(CLIENTS)]
            await asyncio.sleep(2)  # connections made, caches warm
            since = counter.runs()[-1].at if counter.runs() else 0.0
            await asyncio.sleep(SECONDS)
            stop.set()
            await asyncio.gather(*readers)
            starts = sorted(run.at for run in counter.runs(since) if run.parent in pids)
    finally:
        counter.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    span = starts[-1] - starts[0]
    assert len(gaps) <= span / TTL + 0.5, (len(starts), span, gaps)
    # Refreshed all along: about one per TTL (each snapshot lives a TTL past its fetch's end).
    assert len(starts) >= SECONDS / TTL / 2, (len(starts), gaps)
    assert answered[0] > 10 * len(starts), answered


async def test_a_planted_fetch_duration_is_refused_and_the_snapshot_still_serves(
    redis_server: RedisServer, scenario: Scenario
) -> None:
    """A value that is not a duration in the key beside the shared snapshot (planted, or
    corrupted) is counted as refused and taken as 0 (at worst a later refresh): the other
    replica still serves the shared snapshot without asking the head node."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    settings = Settings(
        cache_ttl=60.0,
        response_cache=False,
        redis_url=redis_server.url,
        tokens=parse_token_map(TOKENS),
    )
    first, second = StampingTransport(LocalTransport()), StampingTransport(LocalTransport())
    async with app_client(settings, {"local": first}) as a:
        assert (await a.post("/graphql", json={"query": LISTING}, headers=ALICE)).status_code == 200
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.get(TOOK_KEY) is not None
        client.set(TOOK_KEY, b"-1; or anything", keepttl=True)
    async with app_client(settings, {"local": second}) as b:
        response = await b.post("/graphql", json={"query": LISTING}, headers=ALICE)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        metrics = (await b.get("/metrics")).text
    refused = [line for line in metrics.splitlines() if line.startswith("slurm_graphql_redis_ref")]
    assert float(refused[0].split()[-1]) >= 1, refused
    assert first.squeue_calls() == 1 and second.squeue_calls() == 0, second.batches
