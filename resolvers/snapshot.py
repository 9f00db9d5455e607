"""A snapshot: everything one request needs from one cluster, fetched in one transport call.

A query first decides which datasets it touches (`Need`), then `fetch_snapshot` sends the matching
commands as a single batch and parses the results. Resolvers only ever read a snapshot, so a query
costs at most one round trip per cluster however deep it is.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resolvers.selection import JobCriteria, filter_jobs
from resolvers.slurm.errors import check
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.jobs import JobRow, new_boundary, parse_squeue, squeue_command
from resolvers.slurm.nodes import NodeRecord, parse_nodes, show_nodes_command
from resolvers.slurm.partitions import PartitionRecord, parse_partitions, show_partitions_command
from resolvers.slurm.version import parse_version, version_command
from transport.base import Command, Transport

if TYPE_CHECKING:
    from resolvers.visibility import Visibility

# Job states in which a job holds its nodes.
ACTIVE_JOB_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "STOPPED", "SIGNALING", "RESIZING"}
)


_MAX_SELECTIONS = 64
PARSE_IN_THREAD_ABOVE = 256 * 1024  # characters of output


class Need(enum.Flag):
    NOTHING = 0
    VERSION = enum.auto()
    PARTITIONS = enum.auto()
    NODES = enum.auto()
    JOBS = enum.auto()


@dataclass(eq=False)
class Indexes:
    """What a snapshot derives from its records on first use, kept with it: each index is
    computed once, however many requests the snapshot serves within the cache TTL. A view with
    the same jobs shares its snapshot's Indexes (visibility `all`); a view with fewer jobs gets
    its own."""

    partitions_by_name: dict[str, PartitionRecord] | None = None
    nodes_by_name: dict[str, NodeRecord] | None = None
    nodes_of_partition: dict[str, tuple[str, ...]] | None = None
    partitions_of_node: dict[str, tuple[str, ...]] | None = None
    jobs_sorted: tuple[JobRow, ...] | None = None
    jobs_on_node: dict[str, tuple[JobRow, ...]] | None = None
    # Job selections by filter, at most _MAX_SELECTIONS (dashboards repeat a few filters).
    selections: dict[JobCriteria, tuple[JobRow, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Parsed records of one cluster at one moment; a dataset not asked for is None."""

    cluster: str
    taken_at: float
    needs: Need
    version: str | None = None
    partitions: tuple[PartitionRecord, ...] | None = None
    nodes: tuple[NodeRecord, ...] | None = None
    jobs: tuple[JobRow, ...] | None = None
    # Who this copy was filtered for (resolvers/visibility.py); None: as fetched, unfiltered,
    # which no GraphQL type accepts.
    audience: Visibility | None = None
    # The records are immutable; what is derived from them, and the views made for each
    # audience, are filled in as requests ask for them. Both are fields, so that a reader sees
    # everything a snapshot holds (and what a view shares) in one place.
    indexes: Indexes = field(default_factory=Indexes, compare=False, repr=False)
    views: dict[Visibility, Snapshot] = field(default_factory=dict, compare=False, repr=False)

    @property
    def partitions_by_name(self) -> dict[str, PartitionRecord]:
        if self.indexes.partitions_by_name is None:
            self.indexes.partitions_by_name = {p.name: p for p in self.partitions or ()}
        return self.indexes.partitions_by_name

    @property
    def nodes_by_name(self) -> dict[str, NodeRecord]:
        if self.indexes.nodes_by_name is None:
            self.indexes.nodes_by_name = {n.name: n for n in self.nodes or ()}
        return self.indexes.nodes_by_name

    @property
    def nodes_of_partition(self) -> dict[str, tuple[str, ...]]:
        if self.indexes.nodes_of_partition is None:
            self.indexes.nodes_of_partition = {
                p.name: expand_hostlist(p.node_list or "") for p in self.partitions or ()
            }
        return self.indexes.nodes_of_partition

    @property
    def partitions_of_node(self) -> dict[str, tuple[str, ...]]:
        if self.indexes.partitions_of_node is None:
            index: defaultdict[str, list[str]] = defaultdict(list)
            for partition, nodes in self.nodes_of_partition.items():
                for node in nodes:
                    index[node].append(partition)
            self.indexes.partitions_of_node = {node: tuple(names) for node, names in index.items()}
        return self.indexes.partitions_of_node

    @property
    def jobs_sorted(self) -> tuple[JobRow, ...]:
        """Jobs in a stable order (by Slurm's unique job id), the order of every job listing."""
        if self.indexes.jobs_sorted is None:
            self.indexes.jobs_sorted = tuple(sorted(self.jobs or (), key=lambda job: job.job_id))
        return self.indexes.jobs_sorted

    def jobs_matching(self, criteria: JobCriteria) -> tuple[JobRow, ...]:
        """Jobs matching `criteria`, in listing order; repeated selections are memoised, since
        a snapshot serves every request within the cache TTL and dashboards repeat filters."""
        if criteria.selects_all:
            return self.jobs_sorted
        selections = self.indexes.selections
        selected = selections.get(criteria)
        if selected is None:
            selected = tuple(
                filter_jobs(
                    self.jobs_sorted,
                    states=criteria.states,
                    users=criteria.users,
                    partitions=criteria.partitions,
                    names=criteria.names,
                    ids=criteria.ids,
                )
            )
            if len(selections) >= _MAX_SELECTIONS:
                selections.clear()
            selections[criteria] = selected
        return selected

    def seen_by(self, audience: Visibility) -> Snapshot:
        """This snapshot with only the jobs `audience` may see, marked with it; one view per
        audience, kept with the snapshot (call it through `Visibility.view`)."""
        view = self.views.get(audience)
        if view is None:
            jobs = self.jobs
            if jobs is not None and not audience.everyone:
                jobs = tuple(row for row in jobs if audience.sees(row.user))
            # Same jobs: share the indexes already derived rather than derive them again.
            indexes = self.indexes if jobs is self.jobs else Indexes()
            view = dataclasses.replace(
                self, jobs=jobs, audience=audience, indexes=indexes, views={}
            )
            self.views[audience] = view
        return view

    @property
    def jobs_on_node(self) -> dict[str, tuple[JobRow, ...]]:
        """Jobs holding resources on each node; finished jobs keep their node list, so skip them."""
        if self.indexes.jobs_on_node is None:
            index: defaultdict[str, list[JobRow]] = defaultdict(list)
            for row in self.jobs_sorted:
                job = row.fields()
                if job.state not in ACTIVE_JOB_STATES:
                    continue
                for node in expand_hostlist(job.node_list or ""):
                    index[node].append(row)
            self.indexes.jobs_on_node = {node: tuple(jobs) for node, jobs in index.items()}
        return self.indexes.jobs_on_node


def _batch_for(needs: Need) -> tuple[list[Command], list[Callable[[str], tuple[str, Any]]]]:
    commands: list[Command] = []
    parsers: list[Callable[[str], tuple[str, Any]]] = []
    if Need.VERSION in needs:
        commands.append(version_command())
        parsers.append(lambda out: ("version", parse_version(out)))
    if Need.PARTITIONS in needs:
        commands.append(show_partitions_command())
        parsers.append(lambda out: ("partitions", tuple(parse_partitions(out))))
    if Need.NODES in needs:
        commands.append(show_nodes_command())
        parsers.append(lambda out: ("nodes", tuple(parse_nodes(out))))
    if Need.JOBS in needs:
        boundary = new_boundary()
        commands.append(squeue_command(boundary))
        parsers.append(lambda out: ("jobs", tuple(parse_squeue(out, boundary))))
    return commands, parsers


async def fetch_snapshot(cluster: str, transport: Transport, needs: Need) -> Snapshot:
    """Run the commands `needs` calls for as one batch and parse their output."""
    if not needs:
        return Snapshot(cluster=cluster, taken_at=time.time(), needs=needs)
    commands, parsers = _batch_for(needs)
    results = await transport.run(commands)
    parsed = dict(
        parse(check(result).stdout) for parse, result in zip(parsers, results, strict=True)
    )
    return Snapshot(cluster=cluster, taken_at=time.time(), needs=needs, **parsed)
