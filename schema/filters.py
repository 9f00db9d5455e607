"""Filter inputs. Every criterion is optional; given criteria must all hold."""

from __future__ import annotations

import strawberry

from schema.enums import JobState, NodeState


@strawberry.input(description="Which jobs to list. Within one criterion, any value matches.")
class JobFilter:
    states: list[JobState] | None = None
    users: list[str] | None = None
    partitions: list[str] | None = None
    names: list[str] | None = None
    ids: list[str] | None = strawberry.field(
        default=None, description="Slurm job ids: `42` also matches every task of array 42."
    )


@strawberry.input(description="Which nodes to list.")
class NodeFilter:
    states: list[NodeState] | None = None
    partitions: list[str] | None = None
