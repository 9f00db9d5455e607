"""Filtering of records by what a query asks for. Pure, shared by every resolver."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from resolvers.slurm.jobs import JobRecord, JobRow
from resolvers.slurm.nodes import NodeRecord

# Slurm's base node state plus the DRAIN flag is what people call drained / draining.
_BUSY = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})


def node_state(node: NodeRecord) -> str:
    """The node's state as sinfo names it: DRAIN turns IDLE into DRAINED, MIXED into DRAINING."""
    busy = node.state in _BUSY or "COMPLETING" in node.state_flags
    if "FAIL" in node.state_flags:
        return "FAILING" if busy else "FAIL"
    if "DRAIN" in node.state_flags:
        return "DRAINING" if busy else "DRAINED"
    if node.state in ("IDLE", "ALLOCATED", "MIXED", "DOWN", "ERROR", "FUTURE"):
        return node.state
    return "UNKNOWN"


def job_matches_id(job: JobRecord, wanted: str) -> bool:
    """Slurm's own id semantics: `42` names job 42 or every task of array 42; `42_3` one task."""
    if wanted == job.display_id or wanted == str(job.job_id):
        return True
    return job.array_job_id is not None and wanted == str(job.array_job_id)


def job_partitions(job: JobRecord) -> tuple[str, ...]:
    """A pending job may name several partitions (`debug,batch`)."""
    return tuple(job.partition.split(",")) if job.partition else ()


@dataclass(frozen=True)
class JobCriteria:
    """What a job listing selects; None matches everything. Hashable, to memoise selections."""

    states: frozenset[str] | None = None
    users: frozenset[str] | None = None
    partitions: frozenset[str] | None = None
    names: frozenset[str] | None = None
    ids: tuple[str, ...] | None = None

    @property
    def selects_all(self) -> bool:
        return all(
            value is None
            for value in (self.states, self.users, self.partitions, self.names, self.ids)
        )


def filter_jobs(
    jobs: Iterable[JobRow],
    *,
    states: Collection[str] | None = None,
    users: Collection[str] | None = None,
    partitions: Collection[str] | None = None,
    names: Collection[str] | None = None,
    ids: Collection[str] | None = None,
) -> list[JobRow]:
    """Jobs matching every given criterion; a criterion left out (None) matches everything."""
    selected = []
    for row in jobs:
        job = row.fields()
        if states is not None and job.state not in states:
            continue
        if users is not None and job.user not in users:
            continue
        if names is not None and job.name not in names:
            continue
        if partitions is not None and not any(p in partitions for p in job_partitions(job)):
            continue
        if ids is not None and not any(job_matches_id(job, wanted) for wanted in ids):
            continue
        selected.append(row)
    return selected


def filter_nodes(
    nodes: Iterable[NodeRecord],
    *,
    states: Collection[str] | None = None,
    partitions: Collection[str] | None = None,
) -> list[NodeRecord]:
    """Nodes in one of `states` (as `node_state` names them) and in one of `partitions`."""
    return [
        node
        for node in nodes
        if (states is None or node_state(node) in states)
        and (partitions is None or any(p in partitions for p in node.partitions))
    ]
