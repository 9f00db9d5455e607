"""Several clusters in one API, and errors that never leak internals."""

from __future__ import annotations

import json
from typing import Any

import httpx

from server.app import create_app
from server.settings import Settings
from tests.support.counting import CountingTransport, MockTransport
from transport import Command, CommandResult
from transport.local import LocalTransport


async def post(app: object, query: str) -> dict[str, object]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://localhost",
    ) as client:
        response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_each_cluster_costs_one_round_trip(slurm_cluster: str) -> None:
    """Two configured clusters: one batch each, the default first, names as configured."""
    first, second = CountingTransport(LocalTransport()), CountingTransport(LocalTransport())
    settings = Settings(clusters=(("hpc", "local://"), ("gpu", "local://")), cache_ttl=0.0)
    app = create_app(settings, transports={"hpc": first, "gpu": second})
    async with app.router.lifespan_context(app):
        body = await post(
            app,
            "{ clusters { name partitions { name } jobs { totalCount } } cluster { name }"
            ' gpu: cluster(name: "gpu") { nodes { name } } }',
        )
    assert "errors" not in body, body
    data = body["data"]
    assert isinstance(data, dict)
    assert [c["name"] for c in data["clusters"]] == ["hpc", "gpu"]
    assert data["cluster"] == {"name": "hpc"}
    assert len(data["gpu"]["nodes"]) == 4
    assert (first.calls, second.calls) == (1, 1)


def broken(command: Command) -> CommandResult:
    """Stands for a bug inside the server: no real component fails this way on purpose."""
    raise RuntimeError("secret internal detail /etc/passwd")


async def test_unexpected_errors_are_masked() -> None:
    """An internal failure reaches the client as `internal error` with the request's id (the
    one its logged stack carries), without its details."""
    app = create_app(Settings(cache_ttl=0.0), transports={"local": MockTransport(broken)})
    async with app.router.lifespan_context(app):
        body = await post(app, "{ cluster { jobs { totalCount } } }")
    assert body["data"] == {"cluster": None}
    errors: Any = body["errors"]
    (error,) = errors
    request_id = error["extensions"].pop("requestId")
    assert isinstance(request_id, str) and request_id
    assert error == {
        "message": "internal error",
        "locations": [{"line": 1, "column": 3}],
        "path": ["cluster"],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    assert "secret" not in json.dumps(body)
