"""The Cluster type: one Slurm cluster and everything in it, read from one snapshot."""

from __future__ import annotations

import strawberry

from resolvers.context import RequestContext
from resolvers.ids import validate_job_id
from resolvers.selection import filter_nodes
from resolvers.snapshot import Snapshot
from resolvers.visibility import check_visible
from schema.connection import JobConnection, job_connection
from schema.errors import expected_errors_raised_as_graphql
from schema.filters import JobFilter, NodeFilter
from schema.job import Job
from schema.node import Node
from schema.partition import Partition


@strawberry.type(description="A Slurm cluster reached through one transport.")
class Cluster:
    name: str
    _snapshot: strawberry.Private[Snapshot]

    def __post_init__(self) -> None:
        check_visible(self._snapshot)  # its jobs, however nested, are a request's view

    @strawberry.field(description="The Slurm version the head node runs, e.g. 22.05.8.")
    def slurm_version(self) -> str:
        return self._snapshot.version or ""

    @strawberry.field
    def partitions(self) -> list[Partition]:
        return [Partition.from_record(p, self._snapshot) for p in self._snapshot.partitions or ()]

    @strawberry.field(description="A partition by name; null if there is none.")
    def partition(self, name: str) -> Partition | None:
        record = self._snapshot.partitions_by_name.get(name)
        return Partition.from_record(record, self._snapshot) if record else None

    @strawberry.field
    def nodes(self, filter: NodeFilter | None = None) -> list[Node]:
        records = self._snapshot.nodes or ()
        if filter is not None and (filter.states is not None or filter.partitions is not None):
            # Each node record lists its own partitions: no partition data needs fetching.
            with expected_errors_raised_as_graphql():
                partitions = filter.partition_names()
            records = tuple(
                filter_nodes(records, states=filter.state_values(), partitions=partitions)
            )
        return [Node.from_record(n, self._snapshot) for n in records]

    @strawberry.field(description="A node by name; null if there is none.")
    def node(self, name: str) -> Node | None:
        record = self._snapshot.nodes_by_name.get(name)
        return Node.from_record(record, self._snapshot) if record else None

    @strawberry.field(description="Jobs Slurm still holds (finished ones until MinJobAge passes).")
    def jobs(
        self,
        info: strawberry.Info,
        filter: JobFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> JobConnection:
        context: RequestContext = info.context
        return job_connection(context, self._snapshot, filter, first, after, context.max_page_size)

    @strawberry.field(
        description="A job by id (42, 42_3, 42_[4-9]); null if Slurm does not know it."
    )
    def job(self, id: str) -> Job | None:
        validate_job_id(id)
        # An exact display id or unique id first; `42` for an array means its own record.
        row = self._snapshot.job(id)
        return None if row is None else Job.from_row(row, self._snapshot)
