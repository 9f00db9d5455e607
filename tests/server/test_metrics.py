"""/metrics counts requests by operation, round trips by cluster and backend, and cache hits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.ws import Connection, serving
from transport.local import LocalTransport


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by name and labels."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


async def post(client: httpx.AsyncClient, query: str) -> dict[str, object]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_requests_round_trips_and_cache_are_counted(slurm_cluster: str) -> None:
    """Three named queries, one anonymous, one invalid: each counted under its name and outcome;
    one round trip to the cluster; the second query found its snapshot in the cache."""
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(cache_ttl=60), {"local": transport}) as client:
        await post(client, "query Version { cluster { slurmVersion } }")
        await post(client, "query Again { cluster { name slurmVersion } }")
        await post(client, "query Version { cluster { slurmVersion } }")  # response cache
        await post(client, "{ clusters { name } }")
        await post(client, "query Broken { cluster { nope } }")
        samples = await scrape(client)
    requests = "slurm_graphql_requests_total"
    assert samples[requests, labels(operation="Version", outcome="ok")] == 2
    assert samples[requests, labels(operation="Again", outcome="ok")] == 1
    assert samples[requests, labels(operation="anonymous", outcome="ok")] == 1
    assert samples[requests, labels(operation="Broken", outcome="error")] == 1
    count = "slurm_graphql_request_duration_seconds_count"
    assert samples[count, labels(operation="Version", outcome="ok")] == 2
    trips = labels(cluster="local", backend="local", outcome="ok")
    assert samples["slurm_graphql_transport_round_trips_total", trips] == transport.calls == 1
    duration = labels(cluster="local", backend="local")
    assert samples["slurm_graphql_transport_duration_seconds_count", duration] == 1
    assert samples["slurm_graphql_transport_duration_seconds_sum", duration] > 0
    cache = "slurm_graphql_snapshot_cache_total"
    assert samples[cache, labels(cluster="local", result="miss")] == 1
    assert samples[cache, labels(cluster="local", result="hit")] == 1


async def test_failed_round_trips_are_counted_by_error(slurm_cluster: str) -> None:
    """A batch that times out is a round trip with the error's type as its outcome."""
    transport = LocalTransport(timeout=0.001)
    async with app_client(Settings(cache_ttl=0), {"local": transport}) as client:
        await post(client, "query V { cluster { slurmVersion } }")
        samples = await scrape(client)
    trips = labels(cluster="local", backend="local", outcome="TransportTimeout")
    assert samples["slurm_graphql_transport_round_trips_total", trips] == 1
    assert samples["slurm_graphql_requests_total", labels(operation="V", outcome="error")] == 1


async def test_each_app_has_its_own_registry() -> None:
    """Two apps in one process count their own requests, and both start from zero."""
    async with app_client(Settings()) as first, app_client(Settings()) as second:
        await post(first, "query Q { clusters { name } }")
        await post(first, "query Q { clusters { name } }")
        await post(second, "query Q { clusters { name } }")
        key = ("slurm_graphql_requests_total", labels(operation="Q", outcome="ok"))
        assert (await scrape(first))[key] == 2
        assert (await scrape(second))[key] == 1


async def test_operation_names_cannot_grow_the_series_without_bound() -> None:
    """Past SLURM_GRAPHQL_METRICS_MAX_OPERATIONS distinct names, further ones are `other`."""
    async with app_client(Settings(metrics_max_operations=200)) as client:
        for number in range(205):
            await post(client, f"query Q{number} {{ clusters {{ name }} }}")
        samples = await scrape(client)
    names = {
        dict(pairs)["operation"]
        for name, pairs in samples
        if name == "slurm_graphql_requests_total"
    }
    assert len(names) == 201
    assert samples["slurm_graphql_requests_total", labels(operation="other", outcome="ok")] == 5


async def _scrape_until(
    client: httpx.AsyncClient, done: Callable[[dict[Any, float]], bool]
) -> dict[Any, float]:
    """Scrape until `done` holds (the poller counts as it polls), for at most ten seconds."""
    deadline = time.monotonic() + 10
    while True:
        samples = await scrape(client)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_poller_series_tell_what_the_poller_does(slurm_cluster: str) -> None:
    """While three subscriptions follow the cluster, /metrics says three subscribers, the
    configured interval and a growing poll count; once they end, the cluster has no series."""
    settings = Settings(poll_interval=0.2)
    cluster = labels(cluster="local")
    subscribers = ("slurm_graphql_poller_subscribers", cluster)
    polls = ("slurm_graphql_poller_polls_total", cluster)
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert subscribers not in await scrape(client)  # nobody follows: no poller
        async with Connection.open(url) as connection:
            for _ in range(3):
                await connection.subscribe("subscription { jobEvents { kind } }")
            first = await _scrape_until(client, lambda s: s.get(subscribers) == 3)
            assert first[subscribers] == 3
            assert first["slurm_graphql_poller_interval_seconds", cluster] == 0.2
            later = await _scrape_until(client, lambda s: s.get(polls, 0) >= first[polls] + 3)
            assert later[polls] >= first[polls] + 3
        gone = await _scrape_until(client, lambda s: subscribers not in s)
        assert subscribers not in gone


async def test_websocket_operations_are_counted_as_requests(slurm_cluster: str) -> None:
    """Each operation on a WebSocket is a GraphQL request to the metrics, as it is to the log:
    counted under its name and outcome, whatever protocol carried it."""
    requests = "slurm_graphql_requests_total"
    async with (
        serving(create_app(Settings())) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        async with Connection.open(url) as connection:
            for query in ("query Names { clusters { name } }", "query Bad { nope }"):
                await (await connection.subscribe(query)).until_complete()
        samples = await _scrape_until(
            client, lambda s: (requests, labels(operation="Bad", outcome="error")) in s
        )
    assert samples[requests, labels(operation="Names", outcome="ok")] == 1
    assert samples[requests, labels(operation="Bad", outcome="error")] == 1


async def test_metrics_can_be_turned_off() -> None:
    """SLURM_GRAPHQL_METRICS=false: no /metrics route (e.g. where it would be public)."""
    settings = Settings.from_environ({"SLURM_GRAPHQL_METRICS": "false"})
    async with app_client(settings) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200


async def test_session_series_tell_the_scontrol_processes(slurm_cluster: str) -> None:
    """Three uncached node listings: answered by long-lived scontrol sessions, as many alive as
    there are scontrol children of this process, none failed; gone when the app stops."""
    from tests.transport.test_interactive import children

    before = set(children("scontrol"))  # other tests' transports may keep theirs a while
    async with app_client(Settings(cache_ttl=0, response_cache=False)) as client:
        for _ in range(3):
            body = await post(client, "{ cluster { nodes { name state } } }")
            assert "errors" not in body
        samples = await scrape(client)
        alive = samples["slurm_graphql_transport_sessions", labels(cluster="local")]
        ours = set(children("scontrol")) - before
        assert alive == len(ours) >= 1
        started = samples["slurm_graphql_transport_sessions_started_total", labels(cluster="local")]
        assert started == alive
        answered = labels(cluster="local", result="answered")
        assert samples["slurm_graphql_transport_session_requests_total", answered] >= 3
        failed = labels(cluster="local", result="failed")
        assert samples["slurm_graphql_transport_session_requests_total", failed] == 0
    assert not ours & set(children("scontrol"))
