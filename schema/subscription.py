"""The root Subscription: jobs and nodes followed live, fed by one shared poller per cluster."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import strawberry
from graphql import GraphQLError

from resolvers.ids import validate_job_id
from resolvers.live_context import LiveContext, selection_needs
from resolvers.mailbox import Mailbox
from resolvers.poller import PollerHub, SubscriberTooSlow
from resolvers.snapshot import Need
from resolvers.visibility import Visibility
from resolvers.watches import JobFeed, JobWatch, NodeFeed, Watch
from schema.errors import to_graphql_error
from schema.event import JobEvent, NodeEvent
from schema.filters import JobFilter, NodeFilter
from schema.resolve_info import resolve_info

SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"

E = TypeVar("E")


@dataclass(frozen=True)
class Subscriber:
    """What a watch knows of who subscribed: what they may see, and who they are (whose
    look-ups of jobs nothing showed them are paced together: resolvers/lookup_backoff.py)."""

    visibility: Visibility
    requester: str


def _setup(info: strawberry.Info, cluster: str | None) -> tuple[PollerHub, str, Need, Subscriber]:
    context: LiveContext = info.context
    if not isinstance(context, LiveContext) or context.pollers is None:
        raise RuntimeError("subscriptions need a LiveContext with pollers")
    raw = resolve_info(info)
    needs = selection_needs(raw.field_nodes[0].selection_set, raw.fragments)
    subscriber = Subscriber(context.visibility, context.identity.cache_key)
    return context.pollers, context.resolve_cluster_name(cluster), needs, subscriber


async def _events(
    info: strawberry.Info,
    cluster: str | None,
    make: Callable[[Mailbox, Need, Subscriber], Watch],
    convert: Callable[..., E],
) -> AsyncIterator[E]:
    """The events of the watch `make` builds, for what the subscriber may see (every watch
    takes the subscriber's Visibility: events hold only views filtered for it)."""
    try:
        hub, name, needs, subscriber = _setup(info, cluster)
        watch = make(Mailbox(hub.mailbox_size), needs, subscriber)
    except Exception as exc:
        error = to_graphql_error(exc)
        if error is None:
            raise
        raise error from exc
    try:
        async for data in hub.follow(name, watch):
            yield convert(data)
    except SubscriberTooSlow as exc:
        raise GraphQLError(str(exc), extensions={"code": SUBSCRIBER_TOO_SLOW}) from exc


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="One job: its current state first (SNAPSHOT), then every new state "
        "(CHANGED); completes after a terminal state. A job Slurm has already forgotten is "
        "looked up in accounting; if nothing knows it, one UNKNOWN event is sent. Under "
        "SLURM_GRAPHQL_JOB_VISIBILITY=own, another user's job is one nothing knows."
    )
    async def job_state_changed(
        self, info: strawberry.Info, id: str, cluster: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        def make(mailbox: Mailbox, needs: Need, who: Subscriber) -> Watch:
            job_id = validate_job_id(id)
            return JobWatch(
                job_id, mailbox, needs, visibility=who.visibility, requester=who.requester
            )

        async for event in _events(info, cluster, make, JobEvent.from_data):
            yield event

    @strawberry.subscription(
        description="Jobs matching `filter`: ADDED, CHANGED and REMOVED as they happen; with "
        "`initial`, every matching job first as a SNAPSHOT event."
    )
    async def job_events(
        self,
        info: strawberry.Info,
        cluster: str | None = None,
        filter: JobFilter | None = None,
        initial: bool = False,
    ) -> AsyncGenerator[JobEvent, None]:
        criteria = (filter or JobFilter()).criteria()

        def make(mailbox: Mailbox, needs: Need, who: Subscriber) -> Watch:
            return JobFeed(
                criteria,
                mailbox,
                needs,
                initial=initial,
                visibility=who.visibility,
                requester=who.requester,
            )

        async for event in _events(info, cluster, make, JobEvent.from_data):
            yield event

    @strawberry.subscription(
        description="Nodes matching `filter`: changes of state, flags or reason; with "
        "`initial`, every matching node first as a SNAPSHOT event."
    )
    async def node_events(
        self,
        info: strawberry.Info,
        cluster: str | None = None,
        filter: NodeFilter | None = None,
        initial: bool = False,
    ) -> AsyncGenerator[NodeEvent, None]:
        node_filter = filter or NodeFilter()
        states, partitions = node_filter.state_values(), node_filter.partition_names()

        def make(mailbox: Mailbox, needs: Need, who: Subscriber) -> Watch:
            return NodeFeed(
                states,
                partitions,
                mailbox,
                needs,
                initial=initial,
                visibility=who.visibility,
                requester=who.requester,
            )

        async for event in _events(info, cluster, make, NodeEvent.from_data):
            yield event
