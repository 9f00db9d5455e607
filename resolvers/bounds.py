"""How long each list of a cluster can be: what the cost of a query is computed from.

A list is as long as the cluster makes it, not as the request asks, so its bound is read from the
last snapshot of the cluster: how many partitions, nodes and jobs it had. A node's jobs are
bounded by all the jobs and a job's nodes by all the nodes, not by where jobs run at the moment,
which the scheduler changes in a second; a partition's nodes and a node's partitions come from
the configuration, which holds still, so they are bounded by the longest such list. Before any
snapshot has held a dataset, configured assumptions stand in for it.

A bound read from a snapshot may be outgrown by the time the query runs: the execution budget
(server/execution.py) stops what the static cost let through.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from resolvers.snapshot import Need, Snapshot


@dataclass(frozen=True)
class ListBounds:
    """The longest each list may be; None where nothing is known yet."""

    partitions: int | None = None
    nodes: int | None = None
    jobs: int | None = None
    jobs_per_node: int | None = None
    nodes_per_job: int | None = None
    nodes_per_partition: int | None = None
    partitions_per_node: int | None = None

    def known(self) -> bool:
        return all(getattr(self, f.name) is not None for f in fields(self))

    def blind_to_jobs(self, cap: int) -> ListBounds:
        """These bounds with the cluster's job counts replaced by `cap`: what a request that may
        not see every job is costed by, so that accepting or refusing its query (or the cost
        a refusal states) tells nothing of how many jobs other users have."""
        return replace(self, jobs=cap, jobs_per_node=cap)

    def merged(self, other: ListBounds) -> ListBounds:
        """Every bound of `other` that is known replaces this one's."""
        found = {f.name: getattr(other, f.name) for f in fields(other)}
        return replace(self, **{name: value for name, value in found.items() if value is not None})

    def widest(self, other: ListBounds) -> ListBounds:
        """The larger of each pair: one bound for a list that may come from either cluster."""
        values = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = None if mine is None or theirs is None else max(mine, theirs)
        return ListBounds(**values)

    def or_assumed(self, nodes: int, jobs: int) -> ListBounds:
        """Unknown bounds filled from the assumptions: partitions and nodes-of relations by
        `nodes`, jobs-of relations by `jobs`."""
        return ListBounds(
            partitions=_either(self.partitions, nodes),
            nodes=_either(self.nodes, nodes),
            jobs=_either(self.jobs, jobs),
            jobs_per_node=_either(self.jobs_per_node, jobs),
            nodes_per_job=_either(self.nodes_per_job, nodes),
            nodes_per_partition=_either(self.nodes_per_partition, nodes),
            partitions_per_node=_either(self.partitions_per_node, nodes),
        )


def _either(value: int | None, assumed: int) -> int:
    return assumed if value is None else value


def bounds_of(snapshot: Snapshot, dataset: Need) -> ListBounds:
    """The bounds one dataset of `snapshot` tells, from its unfiltered records."""
    found = ListBounds()
    if dataset is Need.PARTITIONS and snapshot.partitions is not None:
        members = snapshot.nodes_of_partition.values()
        per_node = snapshot.partitions_of_node.values()
        found = replace(
            found,
            partitions=len(snapshot.partitions),
            nodes_per_partition=max((len(m) for m in members), default=0),
            partitions_per_node=max((len(p) for p in per_node), default=0),
        )
    if dataset is Need.NODES and snapshot.nodes is not None:
        # Any job may come to run on every node; how many it spans now says nothing of later.
        found = replace(found, nodes=len(snapshot.nodes), nodes_per_job=len(snapshot.nodes))
    if dataset is Need.JOBS and snapshot.jobs is not None:
        # Likewise any node may come to hold every job (pending ones start in a moment): a
        # bound read from where jobs run now would be cheated by releasing held jobs.
        found = replace(found, jobs=len(snapshot.jobs), jobs_per_node=len(snapshot.jobs))
    return found


class KnownSizes:
    """What the snapshots of one cluster have told of its size so far: the latest bound of each
    dataset. Kept apart from the cluster's SnapshotSource so that it can outlive it: under
    Lambda every event runs the app's lifespan anew, and each would otherwise start unknowing."""

    def __init__(self) -> None:
        self.bounds = ListBounds()

    def record(self, snapshot: Snapshot, datasets: Need) -> None:
        for dataset in (Need.PARTITIONS, Need.NODES, Need.JOBS):
            if dataset in datasets:
                self.bounds = self.bounds.merged(bounds_of(snapshot, dataset))
