"""The Stats type: what a dashboard shows of a cluster or partition, from the same snapshot."""

from __future__ import annotations

import strawberry

from resolvers.selection import JobCriteria
from resolvers.snapshot import Snapshot
from resolvers.stats import Stats as StatsData
from resolvers.stats import Usage, compute_stats
from schema.enums import JobState, NodeState
from schema.scalars import Long


@strawberry.type(description="Units of a resource: allocated + idle + unavailable = total.")
class ResourceUsage:
    total: Long
    allocated: Long
    idle: Long = strawberry.field(description="Free on nodes that take jobs.")
    unavailable: Long = strawberry.field(
        description="Not allocated, on nodes down, drained or failed (sinfo's 'other')."
    )

    @classmethod
    def of(cls, usage: Usage) -> ResourceUsage:
        return cls(
            total=Long(usage.total),
            allocated=Long(usage.allocated),
            idle=Long(usage.idle),
            unavailable=Long(usage.unavailable),
        )


@strawberry.type
class JobStateCount:
    state: JobState
    count: int


@strawberry.type
class UserJobCount:
    user: str
    count: int


@strawberry.type
class NodeStateCount:
    state: NodeState
    count: int


@strawberry.type(
    description="Figures of a cluster or partition from the request's one snapshot (no "
    "extra round trip). Job counts are of the jobs the caller may see (under visibility "
    "`own`, their own) and count an array's pending tasks one by one, as `squeue --array`; "
    "node figures are the cluster's, as `sinfo` shows them to anyone."
)
class Stats:
    _data: strawberry.Private[StatsData]
    _admin: strawberry.Private[bool]

    @classmethod
    def of(cls, snapshot: Snapshot, admin: bool, partition: str | None = None) -> Stats:
        # Every partition's figures come from one pass over the view's jobs, kept with it.
        found = snapshot.stats_of(partition)
        if found is not None:
            return cls(_data=found, _admin=admin)
        if partition is None:
            nodes = tuple(snapshot.nodes or ())
            rows = snapshot.jobs_sorted
        else:
            by_name = snapshot.nodes_by_name
            names = snapshot.nodes_of_partition.get(partition, ())
            nodes = tuple(by_name[n] for n in names if n in by_name)
            rows = snapshot.jobs_matching(JobCriteria(partitions=frozenset({partition})))
        jobs = ((row.display_id, row.fields()) for row in rows)
        return cls(_data=compute_stats(nodes, jobs), _admin=admin)

    @strawberry.field(description="Largest first; states with no job are left out.")
    def jobs_by_state(self) -> list[JobStateCount]:
        counts: dict[JobState, int] = {}
        for state, count in self._data.jobs_by_state:
            key = JobState.from_slurm(state)
            counts[key] = counts.get(key, 0) + count
        return [JobStateCount(state=s, count=c) for s, c in counts.items()]

    @strawberry.field(description="Largest first; null unless the caller administers the API.")
    def jobs_by_user(self) -> list[UserJobCount] | None:
        if not self._admin:
            return None
        return [UserJobCount(user=u, count=c) for u, c in self._data.jobs_by_user]

    @strawberry.field(description="Jobs waiting, an array's pending tasks one by one.")
    def pending_jobs(self) -> int:
        return self._data.pending_jobs

    @strawberry.field(description="CPUs the pending jobs ask for, summed.")
    def pending_cpus(self) -> Long:
        return Long(self._data.pending_cpus)

    @strawberry.field
    def cpus(self) -> ResourceUsage:
        return ResourceUsage.of(self._data.cpus)

    @strawberry.field(description="RealMemory and AllocMem of the nodes, in MB.")
    def memory_mb(self) -> ResourceUsage:
        return ResourceUsage.of(self._data.memory_mb)

    @strawberry.field(description="GPUs from the nodes' GRES (Gres and GresUsed).")
    def gpus(self) -> ResourceUsage:
        return ResourceUsage.of(self._data.gpus)

    @strawberry.field(description="Largest first, in sinfo's states (as ComputeNode.state).")
    def nodes_by_state(self) -> list[NodeStateCount]:
        return [NodeStateCount(state=NodeState(s), count=c) for s, c in self._data.nodes_by_state]
