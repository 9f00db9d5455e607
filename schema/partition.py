"""The Partition type: a queue of nodes with its own limits."""

from __future__ import annotations

import strawberry

from resolvers.context import RequestContext
from resolvers.global_ids import Kind, global_id
from resolvers.slurm.partitions import PartitionRecord
from resolvers.snapshot import Snapshot
from resolvers.visibility import check_visible
from schema.connection import JobConnection, job_connection
from schema.enums import PartitionState
from schema.filters import JobFilter, JobOrder
from schema.identification import Node
from schema.node import ComputeNode
from schema.stats import Stats


@strawberry.type(description="A Slurm partition.")
class Partition(Node):
    name: str
    state: PartitionState
    is_default: bool
    hidden: bool
    max_time_minutes: int | None = strawberry.field(description="Null means unlimited.")
    default_time_minutes: int | None
    max_nodes: int | None = strawberry.field(description="Null means unlimited.")
    total_cpus: int
    total_nodes: int
    node_list: str | None = strawberry.field(description="Member nodes as a Slurm hostlist.")
    _snapshot: strawberry.Private[Snapshot]

    @classmethod
    def from_record(cls, record: PartitionRecord, snapshot: Snapshot) -> Partition:
        return cls(
            name=record.name,
            state=PartitionState.from_slurm(record.state),
            is_default=record.is_default,
            hidden=record.hidden,
            max_time_minutes=record.max_time_minutes,
            default_time_minutes=record.default_time_minutes,
            max_nodes=record.max_nodes,
            total_cpus=record.total_cpus,
            total_nodes=record.total_nodes,
            node_list=record.node_list,
            _snapshot=snapshot,
        )

    def __post_init__(self) -> None:
        check_visible(self._snapshot.audience)  # its jobs, however nested, are a request's view

    @strawberry.field(description="Opaque global id (Node); `name` is Slurm's.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id(Kind.PARTITION, self._snapshot.cluster, self.name))

    @strawberry.field(
        description="Dashboard figures of this partition: its nodes, and the jobs submitted "
        "to it (a job pending in several partitions counts in each)."
    )
    def stats(self, info: strawberry.Info) -> Stats:
        return Stats.of(self._snapshot, info.context.identity.admin, self.name)

    @strawberry.field(description="Member nodes.")
    def nodes(self) -> list[ComputeNode]:
        by_name = self._snapshot.nodes_by_name
        names = self._snapshot.nodes_of_partition.get(self.name, ())
        return [ComputeNode.from_record(by_name[n], self._snapshot) for n in names if n in by_name]

    @strawberry.field(description="Jobs submitted to this partition.")
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
            context,
            self._snapshot,
            filter,
            first,
            after,
            context.max_page_size,
            self.name,
            order_by,
        )
