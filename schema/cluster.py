"""The Cluster type: one Slurm cluster and everything in it, read from one snapshot."""

from __future__ import annotations

import time

import strawberry

from resolvers import accounts as accounting
from resolvers.context import RequestContext
from resolvers.global_ids import Kind, global_id
from resolvers.history import forgotten_job, job_history
from resolvers.ids import BadUserInput, validate_job_id
from resolvers.plan import names_beneath
from resolvers.scope import squeue_id
from resolvers.selection import filter_nodes
from resolvers.snapshot import Snapshot
from resolvers.visibility import check_visible
from schema.accounts import Account, Qos
from schema.connection import JobConnection, JobEdge, PageInfo, job_connection
from schema.errors import expected_errors_as_graphql, expected_errors_raised_as_graphql
from schema.filters import JobFilter, JobOrder, NodeFilter
from schema.history import JobHistoryFilter
from schema.identification import Node
from schema.job import Job
from schema.node import ComputeNode
from schema.partition import Partition
from schema.resolve_info import resolve_info
from schema.stats import Stats

DEFAULT_HISTORY_PAGE = 100
# Job fields only accounting's step rows answer: without them a page's sacct asks for no steps.
STEP_FIELDS = frozenset({"steps", "efficiency"})


def _selected(info: strawberry.Info) -> frozenset[str]:
    raw = resolve_info(info)
    return names_beneath(raw.field_nodes, raw.fragments)


@strawberry.type(description="A Slurm cluster reached through one transport.")
class Cluster(Node):
    name: str
    _snapshot: strawberry.Private[Snapshot]

    def __post_init__(self) -> None:
        check_visible(self._snapshot.audience)  # its jobs, however nested, are a request's view

    @strawberry.field(description="Opaque global id (Node); `name` is the configured one.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id(Kind.CLUSTER, self.name))

    @strawberry.field(description="The Slurm version the head node runs, e.g. 22.05.8.")
    def slurm_version(self) -> str:
        return self._snapshot.version or ""

    @strawberry.field(description="Dashboard figures of the whole cluster (Stats).")
    def stats(self, info: strawberry.Info) -> Stats:
        return Stats.of(self._snapshot, info.context.identity.admin)

    @strawberry.field
    def partitions(self) -> list[Partition]:
        return [Partition.from_record(p, self._snapshot) for p in self._snapshot.partitions or ()]

    @strawberry.field(description="A partition by name; null if there is none.")
    def partition(self, name: str) -> Partition | None:
        record = self._snapshot.partitions_by_name.get(name)
        return Partition.from_record(record, self._snapshot) if record else None

    @strawberry.field
    def nodes(self, filter: NodeFilter | None = None) -> list[ComputeNode]:
        records = self._snapshot.nodes or ()
        if filter is not None and (filter.states is not None or filter.partitions is not None):
            # Each node record lists its own partitions: no partition data needs fetching.
            with expected_errors_raised_as_graphql():
                partitions = filter.partition_names()
            records = tuple(
                filter_nodes(records, states=filter.state_values(), partitions=partitions)
            )
        return [ComputeNode.from_record(n, self._snapshot) for n in records]

    @strawberry.field(description="A node by name; null if there is none.")
    def node(self, name: str) -> ComputeNode | None:
        record = self._snapshot.nodes_by_name.get(name)
        return ComputeNode.from_record(record, self._snapshot) if record else None

    @strawberry.field(description="Jobs Slurm still holds (finished ones until MinJobAge passes).")
    def jobs(
        self,
        info: strawberry.Info,
        filter: JobFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        order_by: list[JobOrder] | None = None,
    ) -> JobConnection:
        context: RequestContext = info.context
        return job_connection(
            context, self._snapshot, filter, first, after, context.max_page_size, None, order_by
        )

    @strawberry.field(description="Slurm's accounts (sacctmgr, as the requesting user).")
    async def accounts(self, info: strawberry.Info) -> list[Account]:
        context: RequestContext = info.context
        context.cacheable = False
        found = await expected_errors_as_graphql(
            accounting.accounts(context.sources[self.name].transport, context.identity.user)
        )
        return [Account.of(a) for a in found]

    @strawberry.field(description="Quality-of-service levels (sacctmgr, as the requesting user).")
    async def qos(self, info: strawberry.Info) -> list[Qos]:
        context: RequestContext = info.context
        context.cacheable = False
        found = await expected_errors_as_graphql(
            accounting.qos(context.sources[self.name].transport, context.identity.user)
        )
        return [Qos.of(q) for q in found]

    @strawberry.field(
        description="Finished jobs from accounting (slurmdbd), by sacct run as the requesting "
        "user with every filter pushed into it; ordered by job id. Default window: the last 24 "
        "hours; at most SLURM_GRAPHQL_MAX_HISTORY_DAYS wide. A page after a cursor that does "
        "not select totalCount asks sacct for the next job ids only (fast); the first page, "
        "and any page selecting totalCount, reads the whole window."
    )
    async def job_history(
        self,
        info: strawberry.Info,
        filter: JobHistoryFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> JobConnection:
        context: RequestContext = info.context
        context.cacheable = False  # history is not in the snapshot the response cache follows
        size = DEFAULT_HISTORY_PAGE if first is None else first
        source = context.sources[self.name]

        async def fetch() -> JobConnection:
            if not 0 <= size <= context.max_page_size:
                raise BadUserInput(f"first must be between 0 and {context.max_page_size}")
            selected = _selected(info)
            page = await job_history(
                source.transport,
                context.identity.user,
                context.visibility,
                (filter or JobHistoryFilter()).values(),
                size,
                after,
                now=int(time.time()),
                max_days=context.max_history_days,
                steps=not STEP_FIELDS.isdisjoint(selected),
                count="totalCount" in selected,
                qos="qos" in selected,  # a QOS name costs sacct slurmdbd's QOS list
                listings=source.listings,
            )
            context.jobs_listed += len(page.records)
            edges = [
                JobEdge(node=Job.from_history(record, self._snapshot), _cursor=cursor)
                for record, cursor in zip(page.records, page.cursors, strict=True)
            ]
            return JobConnection(
                edges=edges,
                page_info=PageInfo(
                    has_next_page=page.has_next_page,
                    has_previous_page=page.has_previous_page,
                    start_cursor=edges[0].cursor() if edges else None,
                    end_cursor=edges[-1].cursor() if edges else None,
                ),
                total_count=page.total_count,
            )

        return await expected_errors_as_graphql(fetch())

    @strawberry.field(
        description="A job by id (42, 42_3, 42_[4-9]); once the controller has forgotten it, "
        "from accounting (source: ACCOUNTING); null if neither knows it."
    )
    async def job(self, info: strawberry.Info, id: str) -> Job | None:
        validate_job_id(id)
        # An exact display id or unique id first; `42` for an array means its own record.
        row = self._snapshot.job(id)
        if row is not None:
            return Job.from_row(row, self._snapshot)
        # Gone from the controller (MinJobAge): slurmdbd may remember it (source: ACCOUNTING).
        context: RequestContext = info.context
        context.cacheable = False
        if squeue_id(id) in self._snapshot.recalled_ids:
            # Asked of accounting in the snapshot's own round trip (resolvers/recall.py).
            recalled = self._snapshot.recalled_job(id)
            return None if recalled is None else Job.from_history(recalled, self._snapshot)
        source = context.sources[self.name]
        record = await expected_errors_as_graphql(
            forgotten_job(
                source.transport, context.identity.user, context.visibility, id, int(time.time())
            )
        )
        return None if record is None else Job.from_history(record, self._snapshot)
