"""GraphiQL in a real headless Chromium, served by a real `slurm-graphql serve` process."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.browser import headless_chromium, requested_urls, run_query_in_graphiql
from tests.support.scenario import Scenario
from tests.support.server import running_server

pytestmark = pytest.mark.browser


def test_graphiql_page_is_served_with_local_assets_only(slurm_cluster: str) -> None:
    """GET /graphql as a browser returns the page; every script and style is on this server."""
    with running_server() as base_url:
        page = httpx.get(f"{base_url}/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql.min.js" in page.text
        assert "unpkg" not in page.text and "jsdelivr" not in page.text
        asset = httpx.get(f"{base_url}/static/graphiql/graphiql.min.js")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert asset.headers["content-encoding"] == "gzip"  # 3.5 MB travels as ~0.7 MB


def test_graphiql_runs_a_query_in_a_browser_without_outside_network(slurm_cluster: str) -> None:
    """Chromium loads GraphiQL, runs a query against the real cluster and shows the result."""
    query = "{ cluster { name partitions { name isDefault } } }"
    with running_server() as base_url, headless_chromium() as driver:
        shown = run_query_in_graphiql(driver, base_url, query)
        result = json.loads(shown)
        partitions = {p["name"] for p in result["data"]["cluster"]["partitions"]}
        assert partitions == {"debug", "batch"}
        hosts = {urlsplit(url).netloc for url in requested_urls(driver)}
        assert hosts == {urlsplit(base_url).netloc}


def test_graphiql_runs_a_subscription_over_a_websocket(
    slurm_cluster: str, scenario: Scenario
) -> None:
    """GraphiQL sends a subscription over graphql-transport-ws and shows the job's event."""
    query = (
        f'subscription {{ jobStateChanged(id: "{scenario.failed}") '
        "{ kind job { state exitCode } } }"
    )
    with running_server() as base_url, headless_chromium() as driver:
        shown = json.loads(run_query_in_graphiql(driver, base_url, query))
    event = shown["data"]["jobStateChanged"]
    assert (event["job"]["state"], event["job"]["exitCode"]) == ("FAILED", 3)
