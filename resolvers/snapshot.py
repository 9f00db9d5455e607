"""A snapshot: everything one request needs from one cluster, fetched in one transport call.

A query first decides which datasets it touches (`Need`), then `fetch_snapshot` sends the matching
commands as a single batch and parses the results. Resolvers only ever read a snapshot, so a query
costs at most one round trip per cluster however deep it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resolvers.recall import RecallLookup, recalls
from resolvers.scope import EVERY_JOB, MAX_PUSHED_IDS, JobScope
from resolvers.selection import JobCriteria, filter_jobs
from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from resolvers.slurm.history import HistoryRecord
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.job_lookup import show_job_as_squeue
from resolvers.slurm.jobs import (
    FIELD_SEPARATOR,
    STRUCTURED_FIELDS,
    JobRow,
    new_boundary,
    parse_squeue,
    squeue_command,
)
from resolvers.slurm.nodes import NodeRecord, parse_nodes, show_nodes_command
from resolvers.slurm.partitions import PartitionRecord, parse_partitions, show_partitions_command
from resolvers.slurm.values import is_decimal
from resolvers.slurm.version import parse_version, version_command
from resolvers.stats import Stats, stats_by_partition
from resolvers.visibility import Visibility
from transport.base import Command, CommandResult, Transport

# Job states in which a job holds its nodes.
ACTIVE_JOB_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "STOPPED", "SIGNALING", "RESIZING"}
)


_MAX_SELECTIONS = 64
_ARRAY_JOB_ID = STRUCTURED_FIELDS.index("ArrayJobID")
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
    # Positions in jobs_sorted of the rows each id the API resolves names: a display id
    # (42_3), a unique id, and for array tasks the array's id (42 names every task of 42).
    jobs_by_id: dict[str, tuple[int, ...]] | None = None
    # Dashboard figures of the cluster (None) and of each partition, made in one pass.
    stats: dict[str | None, Stats] | None = None
    # Job selections by filter, at most _MAX_SELECTIONS (dashboards repeat a few filters).
    selections: dict[JobCriteria, tuple[JobRow, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Parsed records of one cluster at one moment; a dataset not asked for is None."""

    cluster: str
    taken_at: float
    needs: Need
    version: str | None = None
    # The jobs squeue was asked for (resolvers/scope.py); anything less than EVERY_JOB answers
    # only the queries planned for it (SnapshotSource keys such snapshots by it).
    scope: JobScope = EVERY_JOB
    partitions: tuple[PartitionRecord, ...] | None = None
    nodes: tuple[NodeRecord, ...] | None = None
    jobs: tuple[JobRow, ...] | None = None
    # Jobs of scope.ids the controller no longer held, as accounting answered scope.requester
    # (resolvers/slurm/recall.py), and the ids sacct was asked for: only in a snapshot whose
    # scope recalls, which is cached per requester. An id not in `recalled_ids` was not asked.
    recalled: tuple[HistoryRecord, ...] = ()
    recalled_ids: frozenset[str] = frozenset()
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

    @property
    def jobs_by_id(self) -> dict[str, tuple[int, ...]]:
        if self.indexes.jobs_by_id is None:
            index: defaultdict[str, list[int]] = defaultdict(list)
            for position, row in enumerate(self.jobs_sorted):
                index[row.display_id].append(position)
                unique = str(row.job_id)
                if unique != row.display_id:
                    index[unique].append(position)
                if "_" in row.display_id:  # an array task, or an array's pending remainder
                    array = row.structured.split(FIELD_SEPARATOR, _ARRAY_JOB_ID + 1)[_ARRAY_JOB_ID]
                    if is_decimal(array) and array not in (row.display_id, unique):
                        index[array].append(position)
            self.indexes.jobs_by_id = {key: tuple(found) for key, found in index.items()}
        return self.indexes.jobs_by_id

    def job(self, job_id: str) -> JobRow | None:
        """The job `job(id)` names, in O(1): the first in listing order whose display id or
        unique id is `job_id`, else the first task of the array `job_id`."""
        found = self.jobs_by_id.get(job_id, ())
        rows = self.jobs_sorted
        for position in found:
            row = rows[position]
            if row.display_id == job_id or str(row.job_id) == job_id:
                return row
        return rows[found[0]] if found else None

    def recalled_job(self, job_id: str) -> HistoryRecord | None:
        """The job `job(id)` names as accounting answered, if this snapshot asked it."""
        for record in self.recalled:
            if record.display_id == job_id or str(record.job_id) == job_id:
                return record
        return None

    def _with_ids(self, ids: tuple[str, ...]) -> tuple[JobRow, ...]:
        """The jobs any of `ids` names (resolvers/selection.job_matches_id), in listing order."""
        index = self.jobs_by_id
        positions = sorted({p for job_id in ids for p in index.get(job_id, ())})
        rows = self.jobs_sorted
        return tuple(rows[p] for p in positions)

    def jobs_matching(self, criteria: JobCriteria) -> tuple[JobRow, ...]:
        """Jobs matching `criteria`, in listing order; repeated selections are memoised, since
        a snapshot serves every request within the cache TTL and dashboards repeat filters."""
        if criteria.selects_all:
            return self.jobs_sorted
        selections = self.indexes.selections
        selected = selections.get(criteria)
        if selected is None:
            candidates = self.jobs_sorted
            if criteria.ids is not None:
                candidates = self._with_ids(criteria.ids)
            selected = tuple(
                filter_jobs(
                    candidates,
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

    def stats_of(self, partition: str | None) -> Stats | None:
        """The figures (resolvers/stats.py) of the cluster (None) or of a partition of this
        snapshot's view, all made at once on first use; None for a partition it does not hold."""
        if self.indexes.stats is None:
            jobs = ((row.display_id, row.fields()) for row in self.jobs_sorted)
            self.indexes.stats = stats_by_partition(self.nodes or (), self.nodes_of_partition, jobs)
        return self.indexes.stats.get(partition)

    def seen_by(self, audience: Visibility) -> Snapshot:
        """This snapshot with only the jobs `audience` may see, marked with it; one view per
        audience, kept with the snapshot: the only kind of snapshot GraphQL types are built on
        (resolvers/visibility.py)."""
        view = self.views.get(audience)
        if view is None:
            jobs, recalled = self.jobs, self.recalled
            if jobs is not None and not audience.everyone:
                jobs = tuple(row for row in jobs if audience.sees(row.user))
                recalled = tuple(record for record in recalled if audience.sees(record.user))
            # Same jobs: share the indexes already derived rather than derive them again.
            indexes = self.indexes if jobs is self.jobs else Indexes()
            view = dataclasses.replace(
                self, jobs=jobs, recalled=recalled, audience=audience, indexes=indexes, views={}
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


Parser = Callable[[list[CommandResult]], dict[str, Any]]


def _batch_for(needs: Need, scope: JobScope) -> tuple[list[Command], list[Parser]]:
    commands: list[Command] = []
    parsers: list[Parser] = []
    if Need.VERSION in needs:
        commands.append(version_command())
        parsers.append(lambda out: {"version": parse_version(_stdout(out))})
    if Need.PARTITIONS in needs:
        commands.append(show_partitions_command())
        parsers.append(lambda out: {"partitions": tuple(parse_partitions(_stdout(out)))})
    if Need.NODES in needs:
        commands.append(show_nodes_command())
        parsers.append(lambda out: {"nodes": tuple(parse_nodes(_stdout(out)))})
    if Need.JOBS in needs:
        squeues = _squeue_commands(scope, boundary := new_boundary())
        by_id, by_node = scope.ids is not None, scope.nodes is not None
        if recalls(scope, squeues):
            assert scope.requester is not None
            lookups = [RecallLookup.of(squeue, scope) for squeue in squeues]
            commands.extend(lookup.command for lookup in lookups)
            parsers.append(lambda out: _recalled_jobs_of(out, boundary, lookups))
        else:
            commands.extend(squeues)
            parsers.append(lambda out: {"jobs": _jobs_of(out, boundary, by_id, by_node)})
    return commands, parsers


def _recalled_jobs_of(
    results: list[CommandResult], boundary: str, lookups: list[RecallLookup]
) -> dict[str, Any]:
    """Jobs of the squeue halves, and the jobs accounting knew of those squeue had none of."""
    squeues, recalled, asked = [], [], set()
    for lookup, result in zip(lookups, results, strict=True):
        squeue, found = lookup.read(result)
        squeues.append(squeue)
        if found is not None:
            recalled.extend(found)
            asked.add(lookup.job_id)
    return {
        "jobs": _jobs_of(squeues, boundary, True),
        "recalled": tuple(recalled),
        "recalled_ids": frozenset(asked),
    }


def _squeue_commands(scope: JobScope, boundary: str) -> list[Command]:
    """One squeue; or one per job id, each of which slurmctld answers with that job alone (an
    unknown id fails its own squeue, and is an ordinary answer here); or, past MAX_PUSHED_IDS,
    one squeue listing every id (resolvers/scope.py)."""
    lists = {
        "users": sorted(scope.users or ()),
        "states": sorted(scope.states or ()),
        "partitions": sorted(scope.partitions or ()),
        "nodes": sorted(scope.nodes or ()),
    }
    if scope.ids is None:
        return [squeue_command(boundary, **lists)]
    ids = sorted(scope.ids, key=int)
    if len(ids) > MAX_PUSHED_IDS:
        return [squeue_command(boundary, ids, **lists)]
    commands = [squeue_command(boundary, [job_id], **lists) for job_id in ids]
    if scope.paths or scope.states or scope.partitions or scope.nodes:
        return commands
    # A session may answer each lookup without a process (local://), where it can prove its
    # answer is squeue's row (resolvers/slurm/job_lookup.py); squeue runs where it cannot.
    users = frozenset(lists["users"]) or None
    return [
        dataclasses.replace(command, interactive=show_job_as_squeue(job_id, boundary, users))
        for command, job_id in zip(commands, ids, strict=True)
    ]


def _stdout(results: list[CommandResult]) -> str:
    return check(results[0]).stdout


def _jobs_of(
    results: list[CommandResult], boundary: str, by_id: bool, by_node: bool = False
) -> tuple[JobRow, ...]:
    """Rows of every squeue of the batch, each job once (two ids may name the same array). An
    unknown node in --nodelist fails squeue ("Invalid node name"): no job is on it."""
    if not by_id:
        try:
            return tuple(parse_squeue(check(results[0]).stdout, boundary))
        except SlurmError as exc:
            if by_node and exc.kind is SlurmErrorKind.INVALID_NODE:
                return ()
            raise
    rows: dict[tuple[int, str], JobRow] = {}
    for result in results:
        try:
            found = parse_squeue(check(result).stdout, boundary)
        except SlurmError as exc:
            if exc.kind is not SlurmErrorKind.INVALID_JOB_ID:
                raise
            continue  # a job Slurm no longer holds
        for row in found:
            rows.setdefault((row.job_id, row.display_id), row)
    return tuple(rows.values())


async def fetch_snapshot(
    cluster: str, transport: Transport, needs: Need, scope: JobScope = EVERY_JOB
) -> Snapshot:
    """Run the commands `needs` calls for (jobs as far as `scope` says) as one batch and parse
    their output. A large output (a whole queue) is parsed, and its listing order and id index
    built, in a worker thread: 10,000 jobs take 50-100 ms of CPU, which on the event loop's
    thread would stall every other request for as long (the p99 of cached lookups)."""
    if not needs:
        return Snapshot(cluster=cluster, taken_at=time.time(), needs=needs)
    commands, parsers = _batch_for(needs, scope)
    results = await transport.run(commands) if commands else []
    if Need.JOBS not in needs:
        scope = EVERY_JOB
    if sum(len(result.stdout) for result in results) > PARSE_IN_THREAD_ABOVE:
        return await asyncio.to_thread(_indexed, cluster, needs, scope, parsers, results)
    return _parsed(cluster, needs, scope, parsers, results)


def _parsed(
    cluster: str,
    needs: Need,
    scope: JobScope,
    parsers: list[Parser],
    results: list[CommandResult],
) -> Snapshot:
    # Each parser takes its own command's result; the job parser takes the remaining ones.
    parsed: dict[str, Any] = {}
    for i, parse in enumerate(parsers):
        parsed.update(parse(results[i:] if i == len(parsers) - 1 else results[i : i + 1]))
    return Snapshot(cluster=cluster, taken_at=time.time(), needs=needs, scope=scope, **parsed)


def _indexed(
    cluster: str,
    needs: Need,
    scope: JobScope,
    parsers: list[Parser],
    results: list[CommandResult],
) -> Snapshot:
    """The snapshot parsed, with what every job access reads first already derived (in the
    worker thread, before anyone else holds the snapshot)."""
    snapshot = _parsed(cluster, needs, scope, parsers, results)
    if snapshot.jobs is not None:
        snapshot.jobs_by_id  # noqa: B018 (derives jobs_sorted and the id index, kept with it)
    return snapshot
