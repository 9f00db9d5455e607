"""/metrics cannot be grown by clients, and can be kept from them: a token, or a port of its own."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.settings import Settings
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.server import free_port, running_server


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def operations(text: str) -> set[str]:
    return {
        dict(labels)["operation"]
        for name, labels in series(text)
        if name == "slurm_graphql_requests_total"
    }


async def test_a_thousand_operation_names_make_a_bounded_number_of_series() -> None:
    """1,000 distinct names (some overlong) add at most the configured 20 labels, not 1,000."""
    async with app_client(Settings(metrics_max_operations=20)) as client:
        for number in range(1000):
            name = f"Op{number}" if number % 3 else f"Op{number}{'x' * 100}"
            await client.post("/graphql", json={"query": f"query {name} {{ __typename }}"})
        text = (await client.get("/metrics")).text
    names = operations(text)
    assert len(names - {"other"}) == 20
    assert "other" in names
    assert all(len(name) <= 64 for name in names)
    # Each label has a counter and a histogram: ~20 series, where 1,000 names made 20,000.
    assert len(series(text)) <= 22 * 20 + 10


async def test_metrics_need_the_token_when_one_is_set() -> None:
    """With SLURM_GRAPHQL_METRICS_TOKEN: 401 without it, with a user's token or a wrong one."""
    async with app_client(Settings(metrics_token="scrape-secret")) as client:
        refused = [
            await client.get("/metrics"),
            await client.get("/metrics", headers={"Authorization": "Bearer alice-token"}),
            await client.get("/metrics", headers={"Authorization": "Bearer scrape-secre"}),
        ]
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert refused[0].json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "slurm_graphql_requests_total" not in refused[0].text
    assert allowed.status_code == 200 and "slurm_graphql_requests" in allowed.text


def test_metrics_on_their_own_port_are_not_on_the_api_port(slurm_cluster: str) -> None:
    """`serve` with SLURM_GRAPHQL_METRICS_PORT: /metrics only there, the API only on its own."""
    metrics_port = free_port()
    environ = {"SLURM_GRAPHQL_TOKENS": TOKENS, "SLURM_GRAPHQL_METRICS_PORT": str(metrics_port)}
    with running_server(environ) as url, httpx.Client(timeout=10) as client:
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        assert client.get(f"{url}/metrics").status_code == 404
        assert client.get(f"{url}/healthz").status_code == 200
        scraped = client.get(f"{metrics_url}/metrics")
        assert scraped.status_code == 200 and "slurm_graphql_requests" in scraped.text
        assert (
            client.post(f"{metrics_url}/graphql", json={"query": "{ __typename }"}).status_code
            == 404
        )
