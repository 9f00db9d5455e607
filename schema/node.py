"""The ComputeNode type: one compute node as slurmctld sees it (`Node` is the interface of
global object identification, schema/identification.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from resolvers.global_ids import Kind, global_id
from resolvers.selection import node_state
from resolvers.slurm.nodes import NodeRecord
from resolvers.snapshot import Snapshot
from resolvers.visibility import check_visible
from schema.enums import NodeState
from schema.identification import Node
from schema.job import Job
from schema.scalars import to_datetime

if TYPE_CHECKING:
    from schema.partition import Partition


@strawberry.type(description="A compute node.")
class ComputeNode(Node):
    name: str
    state: NodeState
    state_flags: list[str] = strawberry.field(description="Slurm's other flags: DRAIN, …")
    raw_state: str = strawberry.field(description="The state exactly as Slurm prints it.")
    reason: str | None = strawberry.field(
        description="Why the node is drained, down or failed; null in any other state (Slurm "
        "24.11 keeps a resumed node's old reason for a while, 22.05 drops it)."
    )
    reason_set_by: str | None
    reason_time: datetime | None
    cpus: int
    cpus_allocated: int
    real_memory_mb: int
    allocated_memory_mb: int
    free_memory_mb: int | None
    cpu_load: float | None
    features: list[str]
    active_features: list[str]
    gres: list[str]
    address: str | None
    architecture: str | None
    operating_system: str | None
    slurmd_version: str | None
    boot_time: datetime | None
    _record: strawberry.Private[NodeRecord]
    _snapshot: strawberry.Private[Snapshot]

    @classmethod
    def from_record(cls, record: NodeRecord, snapshot: Snapshot) -> ComputeNode:
        return cls(
            name=record.name,
            state=NodeState(node_state(record)),
            state_flags=list(record.state_flags),
            raw_state="+".join((record.state, *record.state_flags)),
            reason=record.reason,
            reason_set_by=record.reason_set_by,
            reason_time=to_datetime(record.reason_time),
            cpus=record.cpus,
            cpus_allocated=record.cpus_allocated,
            real_memory_mb=record.real_memory_mb,
            allocated_memory_mb=record.allocated_memory_mb,
            free_memory_mb=record.free_memory_mb,
            cpu_load=record.cpu_load,
            features=list(record.features),
            active_features=list(record.active_features),
            gres=list(record.gres),
            address=record.address,
            architecture=record.architecture,
            operating_system=record.operating_system,
            slurmd_version=record.slurmd_version,
            boot_time=to_datetime(record.boot_time),
            _record=record,
            _snapshot=snapshot,
        )

    def __post_init__(self) -> None:
        check_visible(self._snapshot.audience)  # its jobs, however nested, are a request's view

    @strawberry.field(description="Opaque global id (Node); `name` is Slurm's.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id(Kind.COMPUTE_NODE, self._snapshot.cluster, self.name))

    @strawberry.field(description="Partitions this node belongs to.")
    def partitions(self) -> list[Annotated[Partition, strawberry.lazy("schema.partition")]]:
        from schema.partition import Partition

        by_name = self._snapshot.partitions_by_name
        names = self._snapshot.partitions_of_node.get(self.name, ())
        return [Partition.from_record(by_name[name], self._snapshot) for name in names]

    @strawberry.field(description="Jobs allocated on this node (running, completing, …).")
    def jobs(self) -> list[Job]:
        return [
            Job.from_row(job, self._snapshot)
            for job in self._snapshot.jobs_on_node.get(self.name, ())
        ]
