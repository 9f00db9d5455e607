"""The root Subscription: jobs and nodes followed live, fed by one shared poller per cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

import strawberry
from graphql import GraphQLError

from resolvers.ids import validate_job_id, validate_name
from resolvers.live_context import LiveContext, selection_needs
from resolvers.mailbox import Mailbox
from resolvers.poller import PollerHub, SubscriberTooSlow
from resolvers.selection import JobCriteria
from resolvers.snapshot import Need
from resolvers.watches import JobFeed, JobWatch, NodeFeed, Watch
from schema.errors import to_graphql_error
from schema.event import JobEvent, NodeEvent
from schema.filters import JobFilter, NodeFilter

SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"

E = TypeVar("E")


def _setup(info: strawberry.Info, cluster: str | None) -> tuple[PollerHub, str, Need]:
    context: LiveContext = info.context
    if not isinstance(context, LiveContext) or context.pollers is None:
        raise RuntimeError("subscriptions need a LiveContext with pollers")
    raw = info._raw_info
    needs = selection_needs(raw.field_nodes[0].selection_set, raw.fragments)
    return context.pollers, context.resolve_cluster_name(cluster), needs


async def _events(
    info: strawberry.Info,
    cluster: str | None,
    make: Callable[[Mailbox, Need], Watch],
    convert: Callable[..., E],
) -> AsyncIterator[E]:
    try:
        hub, name, needs = _setup(info, cluster)
        watch = make(Mailbox(hub.mailbox_size), needs)
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


def _set(values: list[str] | None, kind: str) -> frozenset[str] | None:
    return None if values is None else frozenset(validate_name(kind, v) for v in values)


def _criteria(job_filter: JobFilter | None) -> JobCriteria:
    if job_filter is None:
        return JobCriteria()
    return JobCriteria(
        states=None if job_filter.states is None else frozenset(s.value for s in job_filter.states),
        users=_set(job_filter.users, "user"),
        partitions=_set(job_filter.partitions, "partition"),
        names=_set(job_filter.names, "job"),
        ids=None if job_filter.ids is None else tuple(validate_job_id(i) for i in job_filter.ids),
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="One job: its current state first (SNAPSHOT), then every new state "
        "(CHANGED); completes after a terminal state. A job Slurm has already forgotten is "
        "looked up in accounting; if nothing knows it, one UNKNOWN event is sent."
    )
    async def job_state_changed(
        self, info: strawberry.Info, id: str, cluster: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        def make(mailbox: Mailbox, needs: Need) -> Watch:
            return JobWatch(validate_job_id(id), mailbox, needs)

        only = info.context.sees_only
        async for event in _events(info, cluster, make, JobEvent.from_data):
            if only is not None and event.job is not None and event.job._record.user != only:
                # Another user's job, under SLURM_GRAPHQL_JOB_VISIBILITY=own: as if unknown.
                raise GraphQLError(
                    f"no job {id} visible to you", extensions={"code": "JOB_NOT_FOUND"}
                )
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
        criteria = _criteria(filter)
        only = info.context.sees_only
        if only is not None:
            # Under SLURM_GRAPHQL_JOB_VISIBILITY=own a feed holds the caller's jobs at most.
            users = frozenset({only}) & (criteria.users or frozenset({only}))
            criteria = dataclasses.replace(criteria, users=users)

        def make(mailbox: Mailbox, needs: Need) -> Watch:
            return JobFeed(criteria, mailbox, needs, initial=initial)

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
        states = None if filter is None or filter.states is None else filter.states
        partitions = None if filter is None else filter.partitions

        def make(mailbox: Mailbox, needs: Need) -> Watch:
            return NodeFeed(
                None if states is None else frozenset(s.value for s in states),
                _set(partitions, "partition"),
                mailbox,
                needs,
                initial=initial,
            )

        async for event in _events(info, cluster, make, NodeEvent.from_data):
            yield event
