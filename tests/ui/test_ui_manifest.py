"""The dashboard's persisted-query manifest (server/ui_manifest.py): current with the documents
the modules send, the only documents they send, valid against the schema, and allowed beside
an operator's manifest under SLURM_GRAPHQL_PERSISTED_ONLY (nothing else runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.persisted import NOT_ALLOWED, ManifestError, sha256_of
from server.settings import Settings
from server.ui_manifest import (
    DOCUMENTS_JS,
    MANIFEST,
    UI_DIR,
    UiDocumentsError,
    current_manifest_text,
    ui_documents,
    ui_manifest,
)
from tests.support.app import app_client
from transport.local import LocalTransport

# A template string that opens like a GraphQL document.
_DOCUMENT = re.compile(r"`\s*(query|mutation|subscription|fragment)\b|`\s*\{")


def test_the_shipped_manifest_is_current() -> None:
    """manifest.json is what scripts/ui-manifest writes from documents.js today."""
    assert MANIFEST.read_text(encoding="utf-8") == current_manifest_text(), (
        "run scripts/ui-manifest"
    )
    documents = ui_documents(DOCUMENTS_JS.read_text(encoding="utf-8"))
    assert set(ui_manifest().values()) == set(documents.values())


def test_no_module_sends_a_document_of_its_own() -> None:
    """Every document lives in documents.js: no other module holds one (it would be refused
    under SLURM_GRAPHQL_PERSISTED_ONLY), nor builds one by joining strings."""
    for module in UI_DIR.glob("*.js"):
        if module == DOCUMENTS_JS:
            continue
        text = module.read_text(encoding="utf-8")
        assert not _DOCUMENT.search(text), module.name
        assert not re.search(r"\b(CANCEL|HOLD|RELEASE|JOBS?|OVERVIEW)\s*\+", text), module.name


def test_documents_js_is_read_only_when_plain() -> None:
    """An interpolated or escaped template string is refused: the manifest would not hold the
    string the browser sends."""
    with pytest.raises(UiDocumentsError):
        ui_documents("export const A = `query { ${x} }`;\n")
    with pytest.raises(UiDocumentsError):
        ui_documents("export const A = `query { a }`;\nexport function f() {}\n")


async def test_the_dashboards_documents_run_under_persisted_only(
    slurm_cluster: str, tmp_path: Path
) -> None:
    """With SLURM_GRAPHQL_UI and SLURM_GRAPHQL_PERSISTED_ONLY, the dashboard's documents run
    (sent whole, as the page sends them, or by hash) beside the operator's manifest; any other
    document is PERSISTED_QUERY_NOT_ALLOWED; without the UI, its documents are refused too."""
    mine = "query Mine { clusters { name } }"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({sha256_of(mine): mine}))
    documents = ui_documents(DOCUMENTS_JS.read_text(encoding="utf-8"))
    viewer, partitions = documents["VIEWER"], documents["PARTITIONS"]
    settings = Settings(ui=True, persisted_only=True, persisted_manifest=str(path))
    async with app_client(settings, {"local": LocalTransport()}) as client:
        for sent in (
            {"query": viewer},
            {"query": partitions},
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_of(viewer)}}},
            {"query": mine},
        ):
            body = (await client.post("/graphql", json=sent)).json()
            assert "errors" not in body, (sent, body)
        other = (await client.post("/graphql", json={"query": viewer + " "})).json()
        assert other["errors"][0]["extensions"]["code"] == NOT_ALLOWED
    async with app_client(Settings(ui=True, persisted_only=True), {}) as client:
        assert "errors" not in (await client.post("/graphql", json={"query": viewer})).json()
    without_ui = Settings(persisted_only=True, persisted_manifest=str(path))
    async with app_client(without_ui, {"local": LocalTransport()}) as client:
        refused = (await client.post("/graphql", json={"query": viewer})).json()
        assert refused["errors"][0]["extensions"]["code"] == NOT_ALLOWED
    with pytest.raises(ManifestError):
        create_app(Settings(persisted_only=True), transports={})


async def test_the_dashboards_documents_are_costed_once(slurm_cluster: str) -> None:
    """Pinned with the manifest: the overview's document, asked twice, is validated and costed
    once (server/documents.py's counters)."""
    overview = ui_documents(DOCUMENTS_JS.read_text(encoding="utf-8"))["OVERVIEW"]
    app = create_app(Settings(ui=True), transports={"local": LocalTransport()})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
    ):
        for _ in range(2):
            body = (await client.post("/graphql", json={"query": overview})).json()
            assert "errors" not in body, body
        documents = app.state.documents
        assert (documents.validations, documents.costings) == (1, 1)
