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
from dataclasses import dataclass
from functools import cached_property
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
# Indexes a view with the same jobs may share with the snapshot it was made from.
_SHARED = frozenset(
    {
        "partitions_by_name",
        "nodes_by_name",
        "nodes_of_partition",
        "partitions_of_node",
        "jobs_sorted",
        "_selections",
        "jobs_on_node",
    }
)
PARSE_IN_THREAD_ABOVE = 256 * 1024  # characters of output


class Need(enum.Flag):
    NOTHING = 0
    VERSION = enum.auto()
    PARTITIONS = enum.auto()
    NODES = enum.auto()
    JOBS = enum.auto()


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

    # Indexes below are derived on first use and kept with the snapshot: cached_property writes
    # to the instance dict directly, which a frozen dataclass (without slots) allows.
    @cached_property
    def partitions_by_name(self) -> dict[str, PartitionRecord]:
        return {p.name: p for p in self.partitions or ()}

    @cached_property
    def nodes_by_name(self) -> dict[str, NodeRecord]:
        return {n.name: n for n in self.nodes or ()}

    @cached_property
    def nodes_of_partition(self) -> dict[str, tuple[str, ...]]:
        return {p.name: expand_hostlist(p.node_list or "") for p in self.partitions or ()}

    @cached_property
    def partitions_of_node(self) -> dict[str, tuple[str, ...]]:
        index: defaultdict[str, list[str]] = defaultdict(list)
        for partition, nodes in self.nodes_of_partition.items():
            for node in nodes:
                index[node].append(partition)
        return {node: tuple(names) for node, names in index.items()}

    @cached_property
    def jobs_sorted(self) -> tuple[JobRow, ...]:
        """Jobs in a stable order (by Slurm's unique job id), the order of every job listing."""
        return tuple(sorted(self.jobs or (), key=lambda job: job.job_id))

    @cached_property
    def _selections(self) -> dict[JobCriteria, tuple[JobRow, ...]]:
        return {}

    def jobs_matching(self, criteria: JobCriteria) -> tuple[JobRow, ...]:
        """Jobs matching `criteria`, in listing order; repeated selections are memoised, since
        a snapshot serves every request within the cache TTL and dashboards repeat filters."""
        if criteria.selects_all:
            return self.jobs_sorted
        selected = self._selections.get(criteria)
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
            if len(self._selections) >= _MAX_SELECTIONS:
                self._selections.clear()
            self._selections[criteria] = selected
        return selected

    def seen_by(self, audience: Visibility) -> Snapshot:
        """This snapshot with only the jobs `audience` may see, marked with it; one view per
        audience, kept with the snapshot (call it through `Visibility.view`)."""
        views: dict[Visibility, Snapshot] = self.__dict__.setdefault("_views", {})
        view = views.get(audience)
        if view is None:
            jobs = self.jobs
            if jobs is not None and not audience.everyone:
                jobs = tuple(row for row in jobs if audience.sees(row.user))
            view = dataclasses.replace(self, jobs=jobs, audience=audience)
            if jobs is self.jobs:
                # Same jobs: share the indexes already derived rather than derive them again.
                view.__dict__.update(
                    (name, value) for name, value in self.__dict__.items() if name in _SHARED
                )
            views[audience] = view
        return view

    @cached_property
    def jobs_on_node(self) -> dict[str, tuple[JobRow, ...]]:
        """Jobs holding resources on each node; finished jobs keep their node list, so skip them."""
        index: defaultdict[str, list[JobRow]] = defaultdict(list)
        for row in self.jobs_sorted:
            job = row.fields()
            if job.state not in ACTIVE_JOB_STATES:
                continue
            for node in expand_hostlist(job.node_list or ""):
                index[node].append(row)
        return {node: tuple(jobs) for node, jobs in index.items()}


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
