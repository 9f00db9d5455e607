"""Framing and sniffing: every response, refusals included, tells browsers not to frame it, not
to guess its type and not to leak its URL; GraphiQL's page has its own strict policy."""

from __future__ import annotations

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client

HTML = {"Accept": "text/html"}


def assert_guarded(response: httpx.Response) -> None:
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_graphiql_page_has_a_policy_without_inline_code() -> None:
    """The page allows scripts, styles and connections from this server only, nothing inline,
    no framing, and holds no inline <script> or <style> for such a policy to block."""
    async with app_client(Settings()) as client:
        page = await client.get("/graphql", headers=HTML)
        script = await client.get("/static/page/graphiql.js")
    assert page.status_code == 200
    assert_guarded(page)
    policy = dict(
        (part.split()[0], part.split()[1:])
        for part in page.headers["content-security-policy"].split("; ")
    )
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == ["'self'"]
    assert "<script>" not in page.text and "<style>" not in page.text
    assert " style=" not in page.text and " on" not in page.text.replace(" one", "")
    assert script.status_code == 200 and "GraphiQL.createFetcher" in script.text
    assert_guarded(script)


@pytest.mark.parametrize(
    ("settings", "method", "url", "headers", "status"),
    [
        (Settings(), "POST", "http://localhost/graphql", {}, 200),  # JSON
        (Settings(), "GET", "http://localhost/static/graphiql/graphiql.min.css", {}, 200),
        (Settings(), "GET", "http://localhost/healthz", {}, 200),
        (Settings(), "POST", "http://r.example/graphql", {}, 421),
        (Settings(), "POST", "http://localhost/graphql", {"Origin": "http://evil.example"}, 403),
        (Settings(tokens=parse_token_map(TOKENS)), "POST", "http://localhost/graphql", {}, 401),
        (Settings(), "GET", "http://localhost/nowhere", HTML, 404),
    ],
)
async def test_every_answer_is_guarded(
    settings: Settings, method: str, url: str, headers: dict[str, str], status: int
) -> None:
    """JSON answers, assets, health, refusals and errors: no framing, no sniffing, no referrer,
    and a policy that lets nothing run should one be opened as a page."""
    app = create_app(settings, transports={})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client,
    ):
        response = await client.request(
            method, url, json={"query": "{ __typename }"}, headers=headers
        )
    assert response.status_code == status, response.text
    assert_guarded(response)
    if "text/html" not in response.headers.get("content-type", ""):
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
