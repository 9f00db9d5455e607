"""Results of read queries, reused while the snapshots they were computed from are still in use.

A query's result is a function of its text, its variables and the snapshots it read. While the
snapshot source still serves those same snapshot objects (within the cache TTL), the same query
gets the same answer, so dashboards polling one query cost the server one execution per snapshot
instead of one per request. An entry dies with its snapshots: nothing here has a clock.

Not cached: mutations and subscriptions, results with errors, and results listing many jobs
(they would hold a lot of memory for little gain). Results depend on who asks (visibility, output
read as the caller), so the caller's identity is part of every key.

An entry also holds its snapshots alive, and a stale one is never read again unless its query
comes back: left to the LRU bound, up to MAX_ENTRIES entries each pinned a different stale
10,000-job snapshot (memory that grew with the request mix, issue 18). So whenever a result from
another full snapshot is stored, entries of snapshots no longer served are dropped first. A
partial snapshot (a job by id: resolvers/source.py) holds a few jobs, and each lookup by a new
id reads a new one: sweeping for those would walk every entry on every lookup, for little
memory, so they are left to the LRU bound.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from strawberry.types import ExecutionResult

from resolvers.snapshot import Snapshot
from resolvers.source import SnapshotSource
from server.operations import Operation

MAX_ENTRIES = 256
MAX_JOBS_PER_ENTRY = 1_000


@dataclass(frozen=True)
class _Entry:
    result: ExecutionResult
    snapshots: tuple[Snapshot, ...]


class ResponseCache:
    def __init__(self, sources: Mapping[str, SnapshotSource]) -> None:
        self._sources = sources
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.hits = 0
        # The snapshots (by identity) the last sweep kept entries for: one sweep per new set.
        self._swept_for: tuple[int, ...] = ()

    @staticmethod
    def key(
        query: str | None,
        operation: str | None,
        variables: Any,
        identity: str,
        selected: Operation | None,
    ) -> Hashable | None:
        """The cache key of a request whose document selects `selected` (server/documents.py
        parsed it), or None if it is not a read query. Answers can differ by caller (output
        files are read as the caller), so the caller's identity is part of it."""
        if not query or selected is None or selected.type != "query":
            return None
        try:
            encoded = json.dumps(variables, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return (query, operation, encoded, identity)

    def get(self, key: Hashable) -> ExecutionResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._served(entry):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.result

    def put(
        self, key: Hashable, result: ExecutionResult, snapshots: tuple[Snapshot, ...], jobs: int
    ) -> None:
        if result.errors or jobs > MAX_JOBS_PER_ENTRY:
            return
        identities = tuple(id(s) for s in snapshots if s.scope.everything)
        if identities and identities != self._swept_for:
            self._swept_for = identities
            for stale in [k for k, entry in self._entries.items() if not self._served(entry)]:
                del self._entries[stale]
        self._entries[key] = _Entry(result, snapshots)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _served(self, entry: _Entry) -> bool:
        for snapshot in entry.snapshots:
            source = self._sources.get(snapshot.cluster)
            if source is None or not source.serves(snapshot):
                return False
        return True
