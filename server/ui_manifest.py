"""The dashboard's own persisted-query manifest: every document its modules send, by sha256.

The documents live in one module, ``server/static/ui/documents.js``, each an exported plain
template string (no `${}`), so they can be read here without running JavaScript. The manifest
(``server/static/ui/manifest.json``, Apollo's format) is generated from them by
``scripts/ui-manifest`` and committed; a test fails when it is stale. With ``SLURM_GRAPHQL_UI``
on, the server adds these documents to the ones it allows (server/persisted.py), so
``SLURM_GRAPHQL_PERSISTED_ONLY`` and the dashboard can run together: the page sends the very
strings the manifest holds, and nothing else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from server.persisted import ManifestError, load_manifest, sha256_of

UI_DIR = Path(__file__).parent / "static" / "ui"
DOCUMENTS_JS = UI_DIR / "documents.js"
MANIFEST = UI_DIR / "manifest.json"
# A line's end is spelled out (`$` also matches before a trailing newline: the house's
# validators never use it, tests/security/test_client_errors.py).
_EXPORT = re.compile(r"^export const ([A-Z][A-Z0-9_]*) = `([^`]*)`;(?=\n|\Z)", re.MULTILINE)
_KIND = re.compile(r"^\s*(query|mutation|subscription)\b")


class UiDocumentsError(ManifestError):
    """documents.js holds something this reader would not read exactly as the browser does."""


def ui_documents(text: str) -> dict[str, str]:
    """name -> document, as documents.js exports them."""
    found = {name: body for name, body in _EXPORT.findall(text)}
    for name, body in found.items():
        if "${" in body or "\\" in body:
            raise UiDocumentsError(f"{name}: a document must be a plain string (no ${{}}, no \\)")
    exports = len(re.findall(r"^export ", text, re.MULTILINE))
    if exports != len(found):
        raise UiDocumentsError("documents.js exports something other than plain documents")
    return found


def manifest_text(documents: dict[str, str]) -> str:
    """The manifest of `documents`, in Apollo's persisted-query manifest format."""
    operations = []
    for name, body in documents.items():
        kind = _KIND.match(body)
        operations.append(
            {
                "id": sha256_of(body),
                "name": name,
                "type": kind.group(1) if kind else "query",
                "body": body,
            }
        )
    manifest = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def current_manifest_text() -> str:
    """What manifest.json must hold for the documents.js of this checkout."""
    return manifest_text(ui_documents(DOCUMENTS_JS.read_text(encoding="utf-8")))


def ui_manifest() -> dict[str, str]:
    """sha256 -> document, from the committed manifest.json (every hash checked)."""
    return load_manifest(str(MANIFEST))
