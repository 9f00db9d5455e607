"""Filter inputs. Every criterion is optional; given criteria must all hold."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import strawberry

from resolvers.ids import validate_job_id, validate_name
from resolvers.ordering import OrderField, Ordering
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


# resolvers' own enum, exposed as is: the values a cursor records are the schema's.
JobOrderField = strawberry.enum(
    OrderField, name="JobOrderField", description="What a job listing can be ordered by."
)


@strawberry.enum(description="ASC: smallest (earliest, A) first; DESC: largest first.")
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input(
    description="One key of a listing's order; later keys break ties of earlier ones, and the "
    "job id breaks the rest. Null values (a pending job's end time) come last."
)
class JobOrder:
    field: OrderField = strawberry.field(graphql_type=JobOrderField)
    direction: OrderDirection = OrderDirection.ASC


def ordering_of(order_by: list[JobOrder] | None) -> Ordering:
    """The one conversion to resolvers' Ordering (BadUserInput for a field named twice)."""
    return Ordering(
        tuple((OrderField(o.field), o.direction is OrderDirection.DESC) for o in order_by or ())
    )
