"""Persisted queries: Apollo's automatic persisted queries (APQ) and an allow-list mode.

A client sends `extensions: {persistedQuery: {version: 1, sha256Hash}}` with or without the
document, over POST or GET (Apollo Client's and urql's persisted-query links do). Without the
document, the hash names one the server knows: from the manifest, or registered by an earlier
request that sent both; an unknown hash answers `PersistedQueryNotFound` (code
PERSISTED_QUERY_NOT_FOUND), which makes the client send the document once. A document whose
sha256 is not the hash it came with is refused (PERSISTED_QUERY_HASH_MISMATCH) and never stored.

With SLURM_GRAPHQL_PERSISTED_ONLY only the manifest's documents run (by hash, or sent whole),
on every channel: anything else is PERSISTED_QUERY_NOT_ALLOWED, and nothing is registered.

The request is rewritten at the edge, before anything reads it: the resolved document becomes
its `query`, so the caps, the guard, validation (cached once per document text by
server/documents.py), cost and the response cache see an ordinary request. Registered documents
are kept only for callers that authenticated (or when no authentication is configured), each
within the document size cap and all together within a byte budget, least recently used first
out: nobody can fill the server's memory with documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSchema, parse, validate

from server.settings_error import SettingsError
from slurm_graphql.errors import SlurmGraphQLError

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
INVALID = "BAD_USER_INPUT"
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
DEFAULT_STORE_BYTES = 8 * 1024 * 1024


class PersistedQueryRefused(SlurmGraphQLError):
    """A persisted-query request the server will not run; `code` is what the client sees."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}


class ManifestError(SettingsError):
    """The manifest file cannot be read, or a document in it does not match its hash."""


def sha256_of(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def load_manifest(path: str) -> dict[str, str]:
    """hash -> document, from Apollo's manifest format (`{"format":
    "apollo-persisted-query-manifest", "operations": [{"id", "body"}, …]}`) or a plain
    `{"<sha256>": "<document>"}`; every hash is checked against its document."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"persisted-query manifest {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("operations"), list):
        pairs = [
            (op.get("id"), op.get("body")) for op in data["operations"] if isinstance(op, dict)
        ]
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise ManifestError(f"persisted-query manifest {path}: not a manifest")
    documents = {}
    for key, body in pairs:
        if not isinstance(key, str) or not isinstance(body, str) or sha256_of(body) != key:
            raise ManifestError(f"persisted-query manifest {path}: {key!r} is not its sha256")
        documents[key] = body
    return documents


def check_manifest(manifest: Mapping[str, str], schema: GraphQLSchema) -> None:
    """Every manifest document parses and validates against `schema` (ManifestError if not):
    a frontend learns at deploy time, not from its users, that a document no longer fits."""
    for sha256, document in manifest.items():
        try:
            errors = validate(schema, parse(document))
        except GraphQLError as exc:
            errors = [exc]
        if errors:
            raise ManifestError(f"persisted document {sha256[:12]}…: {errors[0].message}")


@dataclass(frozen=True)
class PersistedRequest:
    """What one request asks: its document (if sent) and the hash it names (if any)."""

    query: str | None
    sha256: str | None

    @classmethod
    def of(cls, query: object, extensions: object) -> PersistedRequest:
        if extensions is None or (isinstance(extensions, dict) and not extensions):
            return cls(query if isinstance(query, str) else None, None)
        if not isinstance(extensions, dict):
            raise PersistedQueryRefused(INVALID, "extensions must be an object")
        persisted = extensions.get("persistedQuery")
        if persisted is None:
            return cls(query if isinstance(query, str) else None, None)
        if (
            not isinstance(persisted, dict)
            or persisted.get("version") != 1
            or not isinstance(persisted.get("sha256Hash"), str)
            or not _SHA256.match(persisted["sha256Hash"])
        ):
            raise PersistedQueryRefused(
                INVALID, "persistedQuery must be {version: 1, sha256Hash: <64 hex digits>}"
            )
        return cls(query if isinstance(query, str) else None, persisted["sha256Hash"])


class PersistedQueries:
    """The documents the server knows by hash, and the rules of APQ and the allow-list."""

    def __init__(
        self,
        manifest: Mapping[str, str],
        only: bool,
        max_document_bytes: int,
        store_bytes: int = DEFAULT_STORE_BYTES,
    ) -> None:
        if only and not manifest:
            raise ManifestError(
                "SLURM_GRAPHQL_PERSISTED_ONLY=true needs SLURM_GRAPHQL_PERSISTED_MANIFEST, a "
                "manifest with at least one document"
            )
        self.manifest = dict(manifest)
        self.only = only
        self._max_document_bytes = max_document_bytes
        self._store_bytes = store_bytes
        self._stored: OrderedDict[str, str] = OrderedDict()
        self._held = 0

    def resolve(self, request: PersistedRequest, keep: bool) -> str | None:
        """The document to run (None: the request sends none and names none, left to the
        usual "no query" answer); PersistedQueryRefused if it may not run."""
        query, sha256 = request.query, request.sha256
        if sha256 is None:
            if self.only and query is not None and sha256_of(query) not in self.manifest:
                raise PersistedQueryRefused(NOT_ALLOWED, "only persisted documents run here")
            return query
        if query is None:
            found = self.manifest.get(sha256)
            if found is None and not self.only:
                found = self._stored.get(sha256)
                if found is not None:
                    self._stored.move_to_end(sha256)
            if found is None:
                raise PersistedQueryRefused(NOT_FOUND, "PersistedQueryNotFound")
            return found
        if sha256_of(query) != sha256:
            raise PersistedQueryRefused(MISMATCH, "provided sha does not match query")
        if self.only:
            if sha256 not in self.manifest:
                raise PersistedQueryRefused(NOT_ALLOWED, "only persisted documents run here")
            return query
        if sha256 not in self.manifest and keep:
            self._store(sha256, query)
        return query

    def _store(self, sha256: str, query: str) -> None:
        size = len(query.encode("utf-8"))
        if size > self._max_document_bytes or size > self._store_bytes:
            return  # the document cap refuses it when it runs; never kept
        if sha256 in self._stored:
            self._stored.move_to_end(sha256)
            return
        self._stored[sha256] = query
        self._held += size
        while self._held > self._store_bytes:
            _, dropped = self._stored.popitem(last=False)
            self._held -= len(dropped.encode("utf-8"))

    @property
    def stored(self) -> int:
        """How many registered documents are kept (tests, metrics)."""
        return len(self._stored)
