"""Decide, from the query text alone, which datasets each cluster must supply.

The whole operation is walked once, before any command runs: fragments are followed, variables
substituted, and user input (job ids, page sizes, cursors) validated on the way, so a bad request
is refused without touching the head node. Field names map to datasets whatever type they sit on
(`nodes` means node records on Cluster, Partition and Job alike), which keeps the walk type-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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

from resolvers.ids import BadUserInput, validate_job_id, validate_name
from resolvers.pagination import decode_cursor
from resolvers.snapshot import Need

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
}


@dataclass(frozen=True)
class Plan:
    """Datasets per cluster name for one operation."""

    needs: Mapping[str, Need]

    def needs_of(self, cluster: str) -> Need:
        return self.needs.get(cluster, Need.NOTHING)


def plan_operation(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    clusters: tuple[str, ...],
    max_page_size: int,
) -> Plan:
    walker = _Walker(fragments, variables, max_page_size)
    needs: dict[str, Need] = {}
    for root in walker.fields(operation.selection_set):
        name = root.name.value
        if name == "clusters":
            targets = clusters
        elif name == "cluster":
            requested = walker.arguments(root).get("name")
            targets = (requested if isinstance(requested, str) else clusters[0],)
        else:
            continue
        found = walker.needs(root.selection_set)
        for cluster in targets:
            needs[cluster] = needs.get(cluster, Need.NOTHING) | found
    return Plan(needs)


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

    def needs(self, selection_set: SelectionSetNode | None) -> Need:
        found = Need.NOTHING
        for field in self.fields(selection_set):
            name = field.name.value
            found |= FIELD_NEEDS.get(name, Need.NOTHING)
            if name in ("job", "jobs"):
                self._validate(self.arguments(field))
            found |= self.needs(field.selection_set)
        return found

    def _validate(self, arguments: Mapping[str, Any]) -> None:
        if isinstance(arguments.get("id"), str):
            validate_job_id(arguments["id"])
        first = arguments.get("first")
        if isinstance(first, int) and not 0 <= first <= self._max_page_size:
            raise BadUserInput(f"first must be between 0 and {self._max_page_size}, got {first}")
        after = arguments.get("after")
        if isinstance(after, str):
            decode_cursor(after)
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
