"""The request context of subscriptions, and of every operation on one WebSocket connection.

Strawberry builds one context per WebSocket connection and hands it to every operation sent on
it, so the per-request memo of RequestContext (one plan, one snapshot per cluster) must not
outlive an operation there: on a connection each operation plans for itself, and snapshots come
straight from the source (which still coalesces fetches and caches them for the TTL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)

from resolvers.context import RequestContext
from resolvers.plan import FIELD_NEEDS, Plan
from resolvers.poller import PollerHub
from resolvers.snapshot import Need, Snapshot


@dataclass
class LiveContext(RequestContext):
    pollers: PollerHub | None = None
    per_connection: bool = False
    # What the client sent in `connection_init` (graphql-transport-ws and graphql-ws): strawberry
    # stores it here before calling the view's on_ws_connect, where authentication plugs in.
    connection_params: dict[str, Any] = field(default_factory=dict)

    def plan(self, info: GraphQLResolveInfo[Any]) -> Plan:
        if self.per_connection:
            self._plan = None
        return super().plan(info)

    async def snapshot(self, cluster: str, info: GraphQLResolveInfo[Any]) -> Snapshot:
        if self.per_connection:
            plan = self.plan(info)
            scope = plan.scope_of(cluster).seen_by(self.visibility)
            return self.visible(await self.sources[cluster].get(plan.needs_of(cluster), scope))
        return await super().snapshot(cluster, info)


def selection_needs(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, Any],
    seen: frozenset[str] = frozenset(),
    top: bool = True,
) -> Need:
    """The datasets the fields of an event's selection read (a job's `nodes`, a node's `jobs`).

    The event's own fields (`job`, `node`) are the record the event carries, not a dataset to
    fetch: only what is selected under them counts.
    """
    found = Need.NOTHING
    for selection in selection_set.selections if selection_set is not None else ():
        if isinstance(selection, FieldNode):
            if not top:
                found |= FIELD_NEEDS.get(selection.name.value, Need.NOTHING)
            found |= selection_needs(selection.selection_set, fragments, seen, top=False)
        elif isinstance(selection, InlineFragmentNode):
            found |= selection_needs(selection.selection_set, fragments, seen, top)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                spread = fragments[name].selection_set
                found |= selection_needs(spread, fragments, seen | {name}, top)
    return found
