"""Limits on what one GraphQL document may ask for, checked while it is validated: before any
command reaches a head node, and once per distinct document (validation results are cached).

- depth: the longest chain of nested fields, fragments followed;
- aliases: fields renamed with an alias, the usual way to repeat an expensive field;
- cost: each field costs 1, and a page of a job listing (`jobs(first: N) { edges … }`) costs its
  children N times (the page-size limit when `first` is a variable or omitted), compounding when
  listings nest. Other lists (clusters, partitions, nodes, a node's jobs) are bounded by the
  cluster itself, not by the request, and cost their children once.
Errors carry `extensions.code = QUERY_TOO_COMPLEX` and say which limit was passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
)

PAGED_FIELD = "jobs"  # a connection when it has arguments or edges under it
PAGE_ITEMS = "edges"


@dataclass(frozen=True)
class Limits:
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 500_000
    max_page_size: int = 10_000


@dataclass(frozen=True)
class Measure:
    depth: int
    aliases: int
    cost: int


def measure(document: DocumentNode, max_page_size: int) -> Measure:
    """The largest depth and cost of any operation in `document`, and all its aliases."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _Walker(fragments, max_page_size)
    depth = cost = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            found_depth, found_cost = walker.walk(definition.selection_set, frozenset(), 1)
            depth, cost = max(depth, found_depth), max(cost, found_cost)
    return Measure(depth, walker.aliases, cost)


class _Walker:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode], max_page_size: int) -> None:
        self._fragments = fragments
        self._max_page_size = max_page_size
        self.aliases = 0

    def walk(
        self, selections: SelectionSetNode | None, seen: frozenset[str], page: int
    ) -> tuple[int, int]:
        """(depth, cost) of a selection set under a listing of `page` items; a fragment inside
        itself counts once."""
        depth = cost = 0
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    self.aliases += 1
                name = selection.name.value
                inner_page = self._page_size(selection) if name == PAGED_FIELD else page
                child_depth, child_cost = self.walk(selection.selection_set, seen, inner_page)
                depth = max(depth, child_depth + 1)
                cost += 1 + (page if name == PAGE_ITEMS else 1) * child_cost
            else:
                inner: SelectionSetNode | None = None
                if isinstance(selection, InlineFragmentNode):
                    inner = selection.selection_set
                elif isinstance(selection, FragmentSpreadNode):
                    fragment_name = selection.name.value
                    fragment = self._fragments.get(fragment_name)
                    if fragment is None or fragment_name in seen:
                        continue
                    inner, seen = fragment.selection_set, seen | {fragment_name}
                child_depth, child_cost = self.walk(inner, seen, page)
                depth, cost = max(depth, child_depth), cost + child_cost
        return depth, cost

    def _page_size(self, field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value == "first" and isinstance(argument.value, IntValueNode):
                return max(0, min(int(argument.value.value), self._max_page_size))
        return self._max_page_size


def limits_rule(limits: Limits) -> type[ASTValidationRule]:
    """A validation rule that refuses documents beyond `limits`."""

    class QueryLimits(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            found = measure(context.document, limits.max_page_size)
            for what, value, limit in (
                ("depth", found.depth, limits.max_depth),
                ("aliases", found.aliases, limits.max_aliases),
                ("cost", found.cost, limits.max_cost),
            ):
                if value > limit:
                    context.report_error(_too_complex(f"query {what} {value} exceeds {limit}"))

    return QueryLimits


def _too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})
