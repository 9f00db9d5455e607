"""Filter inputs. Every criterion is optional; given criteria must all hold."""

from __future__ import annotations

from collections.abc import Iterable

import strawberry

from resolvers.ids import validate_job_id, validate_name
from resolvers.selection import JobCriteria
from schema.enums import JobState, NodeState


def _names(kind: str, values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(validate_name(kind, v) for v in values)


@strawberry.input(description="Which jobs to list. Within one criterion, any value matches.")
class JobFilter:
    states: list[JobState] | None = None
    users: list[str] | None = None
    partitions: list[str] | None = None
    names: list[str] | None = None
    ids: list[str] | None = strawberry.field(
        default=None, description="Slurm job ids: `42` also matches every task of array 42."
    )

    def criteria(self, only_partition: str | None = None) -> JobCriteria:
        """The one conversion to what resolvers select by, every value validated (BadUserInput).
        `only_partition` narrows to one partition (a Partition's own job listing)."""
        partitions = self.partitions
        if only_partition is not None:
            partitions = [p for p in (partitions or [only_partition]) if p == only_partition]
        return JobCriteria(
            states=None if self.states is None else frozenset(s.value for s in self.states),
            users=_names("user", self.users),
            partitions=_names("partition", partitions),
            names=_names("job", self.names),
            ids=None if self.ids is None else tuple(validate_job_id(i) for i in self.ids),
        )


@strawberry.input(description="Which nodes to list.")
class NodeFilter:
    states: list[NodeState] | None = None
    partitions: list[str] | None = None

    def state_values(self) -> frozenset[str] | None:
        """The states as `node_state` names them; None matches every state."""
        return None if self.states is None else frozenset(s.value for s in self.states)

    def partition_names(self) -> frozenset[str] | None:
        """The partitions, validated; None matches every partition."""
        return _names("partition", self.partitions)
