"""Decide, from the query text alone, which datasets each cluster must supply.

The whole operation is walked once, before any command runs: fragments are followed, variables
substituted, and user input (job ids, page sizes, cursors) validated on the way, so a bad request
is refused without touching the head node. Field names map to datasets whatever type they sit on
(`nodes` means node records on Cluster, Partition and Job alike), which keeps the walk type-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    value_from_ast_untyped,
)

from resolvers.global_ids import GlobalId, Kind, read_global_id, read_global_ids
from resolvers.ids import BadUserInput, validate_job_id, validate_name
from resolvers.ordering import is_ordered_cursor
from resolvers.pagination import decode_cursor
from resolvers.scope import EVERY_JOB, JobScope, merge_all, scope_of_job, scope_of_listing
from resolvers.selection import JobCriteria
from resolvers.snapshot import ACTIVE_JOB_STATES, Need

FIELD_NEEDS: Mapping[str, Need] = {
    "slurmVersion": Need.VERSION,
    # `%b` in a filename pattern means something from Slurm 24.11 on (resolvers/slurm/filename.py).
    "stdoutPath": Need.VERSION,
    "stderrPath": Need.VERSION,
    "output": Need.VERSION,
    "partitions": Need.PARTITIONS,
    "partition": Need.PARTITIONS,
    "nodes": Need.NODES,
    "node": Need.NODES,
    "jobs": Need.JOBS,
    "job": Need.JOBS,
    "stats": Need.NODES | Need.JOBS,
}


# Job fields that read squeue's output patterns (JobScope.paths).
PATH_FIELDS = frozenset({"stdoutPath", "stderrPath", "stdoutPattern", "stderrPattern", "output"})

# What a node's `jobs` read: the jobs holding nodes, as squeue --states (resolvers/scope.py).
ACTIVE_JOBS = JobScope(states=ACTIVE_JOB_STATES)


@dataclass(frozen=True)
class Plan:
    """Datasets per cluster name for one operation, and the jobs it reads there."""

    needs: Mapping[str, Need]
    scopes: Mapping[str, JobScope] = field(default_factory=dict)

    def needs_of(self, cluster: str) -> Need:
        return self.needs.get(cluster, Need.NOTHING)

    def scope_of(self, cluster: str) -> JobScope:
        """The jobs the operation's job fields on `cluster` read, together (every job unless
        each of them names its jobs in a way squeue can be asked: resolvers/scope.py)."""
        return self.scopes.get(cluster, EVERY_JOB)


def plan_operation(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    clusters: tuple[str, ...],
    max_page_size: int,
) -> Plan:
    walker = _Walker(fragments, variables, max_page_size)
    needs: dict[str, Need] = {}
    scopes: dict[str, list[JobScope]] = {}
    for root in walker.fields(operation.selection_set):
        name = root.name.value
        if name == "clusters":
            targets = clusters
        elif name == "cluster":
            requested = walker.arguments(root).get("name")
            targets = (requested if isinstance(requested, str) else clusters[0],)
        elif name in ("node", "nodes"):
            for found_id in _global_ids(walker.arguments(root), name):
                if found_id.cluster not in clusters:
                    continue  # null, without reading anything
                walker.scopes = []
                found = _need_of(found_id) | walker.needs(
                    root.selection_set,
                    on_cluster=found_id.kind is Kind.CLUSTER,
                    partition=found_id.key if found_id.kind is Kind.PARTITION else None,
                    node=found_id.key if found_id.kind is Kind.COMPUTE_NODE else None,
                )
                if found_id.kind is Kind.JOB:
                    walker.scopes.append(scope_of_job(found_id.key))
                needs[found_id.cluster] = needs.get(found_id.cluster, Need.NOTHING) | found
                scopes.setdefault(found_id.cluster, []).extend(walker.scopes)
            continue
        else:
            continue
        walker.scopes = []
        found = walker.needs(root.selection_set, on_cluster=True)
        for cluster in targets:
            needs[cluster] = needs.get(cluster, Need.NOTHING) | found
            scopes.setdefault(cluster, []).extend(walker.scopes)
    if not names_beneath([operation], fragments) & PATH_FIELDS:
        scopes = {cluster: [s.without_paths() for s in found] for cluster, found in scopes.items()}
    merged = {cluster: merge_all(found) or EVERY_JOB for cluster, found in scopes.items()}
    return Plan(needs, merged)


def _global_ids(arguments: Mapping[str, Any], field_name: str) -> tuple[GlobalId, ...]:
    """The ids `node(id:)` or `nodes(ids:)` looks up; an id the API could not have made names
    nothing and plans nothing (too many ids refuse the request before anything runs)."""
    if field_name == "node":
        found = read_global_id(arguments.get("id"))
        return () if found is None else (found,)
    values = arguments.get("ids")
    read = () if values is None else read_global_ids(values)
    return tuple(one for one in read if one is not None)


def _need_of(found: GlobalId) -> Need:
    """What looking the object itself up reads (its fields add theirs)."""
    return {
        Kind.CLUSTER: Need.NOTHING,
        Kind.PARTITION: Need.PARTITIONS,
        Kind.COMPUTE_NODE: Need.NODES,
        Kind.JOB: Need.JOBS,
        Kind.JOB_STEP: Need.NOTHING,  # sacct, as the caller: no snapshot (schema/query.py)
    }[found.kind]


def datasets_named(
    operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Need:
    """Every dataset a field of `operation` names, wherever it sits (nothing is validated):
    all that its cost can depend on, and all that a request of it could read."""
    walker = _Walker(fragments, {}, 0)

    def walk(selection_set: SelectionSetNode | None) -> Need:
        found = Need.NOTHING
        for field_node in walker.fields(selection_set):
            found |= FIELD_NEEDS.get(field_node.name.value, Need.NOTHING)
            found |= walk(field_node.selection_set)
        return found

    return walk(operation.selection_set)


def names_beneath(
    field_nodes: Sequence[FieldNode | OperationDefinitionNode],
    fragments: Mapping[str, FragmentDefinitionNode],
) -> frozenset[str]:
    """The name of every field selected beneath `field_nodes`, fragments followed; type-free
    like the rest of the plan, and blind to @skip/@include (a name counts if it may be read)."""
    # A loop, not a recursive closure: a closure naming itself is a reference cycle, which
    # every request would leave to the garbage collector (tests/server/test_memory.py).
    walker = _Walker(fragments, {}, 0)
    found: set[str] = set()
    pending = [node.selection_set for node in field_nodes]
    while pending:
        for field_node in walker.fields(pending.pop()):
            found.add(field_node.name.value)
            pending.append(field_node.selection_set)
    return frozenset(found)


class _Walker:
    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        max_page_size: int,
    ) -> None:
        self._fragments = fragments
        self._variables = variables
        self._max_page_size = max_page_size
        # What each job field met so far reads (`needs` appends).
        self.scopes: list[JobScope] = []

    def fields(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str] = frozenset()
    ) -> Iterator[FieldNode]:
        """Every field of a selection set, fragments flattened (each fragment once per path)."""
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self.fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is not None and name not in seen:
                    yield from self.fields(fragment.selection_set, seen | {name})

    def arguments(self, field: FieldNode) -> dict[str, Any]:
        return {
            argument.name.value: value_from_ast_untyped(argument.value, dict(self._variables))
            for argument in field.arguments or ()
        }

    def needs(
        self,
        selection_set: SelectionSetNode | None,
        on_cluster: bool = False,
        partition: str | None = None,
        parent: str | None = None,
        node: str | None = None,
    ) -> Need:
        """The datasets `selection_set` reads. `on_cluster`: its fields are a Cluster's, whose
        `job` and `jobs` name their jobs; `partition`: they are `partition(name:)`'s, whose
        `jobs` are that partition's; `node`: they are one named node's (`node(name:)`, or by
        its global id); `parent`: the name of the field they select from. A node's `jobs` are
        its active jobs (Snapshot.jobs_on_node), so they read those states only, and a named
        node's only those on it (squeue --nodelist); any partition's `jobs` read what their
        filter selects. Any other job field reads every job."""
        found = Need.NOTHING
        for field_node in self.fields(selection_set):
            name = field_node.name.value
            found |= FIELD_NEEDS.get(name, Need.NOTHING)
            inner: str | None = None
            inner_node: str | None = None
            if name in ("job", "jobs"):
                arguments = self.arguments(field_node)
                self._validate(arguments)
                if on_cluster:
                    self.scopes.append(_scope(name, arguments))
                elif partition is not None and name == "jobs":
                    self.scopes.append(_scope(name, arguments).in_partition(partition))
                elif name == "jobs" and (parent in ("node", "nodes") or node is not None):
                    self.scopes.append(ACTIVE_JOBS if node is None else ACTIVE_JOBS.on_node(node))
                elif name == "jobs" and parent in ("partition", "partitions"):
                    self.scopes.append(_scope(name, arguments))
                else:
                    self.scopes.append(EVERY_JOB)
            elif name == "stats":  # every job the cluster's (or the partition's) stats count
                scope = EVERY_JOB if partition is None else EVERY_JOB.in_partition(partition)
                self.scopes.append(scope)
            elif on_cluster and name == "partition":
                requested = self.arguments(field_node).get("name")
                inner = requested if isinstance(requested, str) else None
            elif on_cluster and name == "node":
                requested = self.arguments(field_node).get("name")
                inner_node = requested if isinstance(requested, str) else None
            found |= self.needs(
                field_node.selection_set, partition=inner, parent=name, node=inner_node
            )
        return found

    def _validate(self, arguments: Mapping[str, Any]) -> None:
        if isinstance(arguments.get("id"), str):
            validate_job_id(arguments["id"])
        first = arguments.get("first")
        if isinstance(first, int) and not 0 <= first <= self._max_page_size:
            raise BadUserInput(f"first must be between 0 and {self._max_page_size}, got {first}")
        after = arguments.get("after")
        if isinstance(after, str) and not is_ordered_cursor(after):
            decode_cursor(after)  # an ordered one is checked against its orderBy when used
        job_filter = arguments.get("filter")
        if isinstance(job_filter, Mapping):
            for job_id in job_filter.get("ids") or ():
                if isinstance(job_id, str):
                    validate_job_id(job_id)
            # The same rule as subscriptions' filters (schema/subscription.py).
            for key, kind in (("users", "user"), ("partitions", "partition"), ("names", "job")):
                for value in job_filter.get(key) or ():
                    if isinstance(value, str):
                        validate_name(kind, value)


def _scope(field_name: str, arguments: Mapping[str, Any]) -> JobScope:
    """What a Cluster's `job(id)` or `jobs(filter)` reads (arguments already validated)."""
    if field_name == "job":
        job_id = arguments.get("id")
        return scope_of_job(job_id, recall=True) if isinstance(job_id, str) else EVERY_JOB
    job_filter = arguments.get("filter")
    if not isinstance(job_filter, Mapping):
        return EVERY_JOB
    try:
        states, users, partitions, ids = (
            _strings(job_filter.get(key)) for key in ("states", "users", "partitions", "ids")
        )
    except _NotStrings:
        return EVERY_JOB  # not what schema/filters.py will read: leave the filtering to it
    return scope_of_listing(
        JobCriteria(
            states=states,
            users=users,
            partitions=partitions,
            ids=None if ids is None else tuple(sorted(ids)),
        )
    )


class _NotStrings(ValueError):
    pass


def _strings(value: Any) -> frozenset[str] | None:
    """A list argument as GraphQL coerces it (a lone value is a list of one); None if absent."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise _NotStrings
    return frozenset(values)
