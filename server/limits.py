"""Limits on what one GraphQL document may ask for, checked before any command reaches a head
node.

- depth: the longest chain of nested fields, fragments followed;
- aliases: fields renamed with an alias, the usual way to repeat an expensive field;
  both depend on the text alone, so they are checked while validating (results are cached);
- cost, output reads and output bytes (server/cost.py): every list costs its children once per
  item it may hold, bounded by the cluster's size in its last snapshot. That size changes, so the
  cost is checked when each request starts executing: the document's cost plan, worked out once
  and kept with the document (server/documents.py), evaluated with the sizes of the moment.
  Until a snapshot has told a cluster's size, configured assumptions stand in for it; a document
  refused under them gets one look at the real cluster (the snapshot any query of it fetches)
  before it is refused for good.
Errors carry `extensions.code = QUERY_TOO_COMPLEX` and say which limit was passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import reduce

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from resolvers.bounds import ListBounds
from resolvers.context import RequestContext
from resolvers.log_values import loggable
from resolvers.plan import datasets_named
from resolvers.scope import EVERY_JOB
from resolvers.source import SnapshotSource
from server.cost import Cost, CostPlan, TooIntricate
from server.documents import DocumentCache

logger = logging.getLogger("slurm_graphql.limits")

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


@dataclass(frozen=True)
class Limits:
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 500_000
    max_page_size: int = 10_000
    # A cluster's size until a snapshot has told it (SLURM_GRAPHQL_ASSUMED_NODES / _JOBS).
    assumed_nodes: int = 1_000
    assumed_jobs: int = 10_000
    max_output_reads: int = 20
    max_output_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class Shape:
    depth: int
    aliases: int


def measure_shape(document: DocumentNode) -> Shape:
    """The largest depth of any operation in `document`, and all its aliases."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _ShapeWalker(fragments)
    depth = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            depth = max(depth, walker.depth(definition.selection_set, frozenset()))
    return Shape(depth, walker.aliases)


class _ShapeWalker:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self.aliases = 0

    def depth(self, selections: SelectionSetNode | None, seen: frozenset[str]) -> int:
        """Depth of a selection set; a fragment inside itself counts once."""
        depth = 0
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    self.aliases += 1
                depth = max(depth, self.depth(selection.selection_set, seen) + 1)
                continue
            inner: SelectionSetNode | None = None
            if isinstance(selection, InlineFragmentNode):
                inner = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is None or name in seen:
                    continue
                inner, seen = fragment.selection_set, seen | {name}
            depth = max(depth, self.depth(inner, seen))
        return depth


def limits_rule(limits: Limits) -> type[ASTValidationRule]:
    """A validation rule that refuses documents deeper, or with more aliases, than `limits`."""

    class QueryLimits(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            found = measure_shape(context.document)
            for what, value, limit in (
                ("depth", found.depth, limits.max_depth),
                ("aliases", found.aliases, limits.max_aliases),
            ):
                if value > limit:
                    context.report_error(too_complex(f"query {what} {value} exceeds {limit}"))

    return QueryLimits


class CostLimit(SchemaExtension):
    """Refuses an operation whose cost, output reads or output bytes pass `limits`, when it is
    about to execute (queries, mutations, and each subscription once, for every event)."""

    def __init__(
        self,
        *,
        limits: Limits,
        sources: Mapping[str, SnapshotSource],
        documents: DocumentCache | None = None,
        owner_of: Callable[[RequestContext], str | None] | None = None,
    ) -> None:
        self._limits = limits
        self._sources = sources  # filled by the app's lifespan
        self._documents = documents  # where cost plans are kept with their documents
        # Whose documents a request's are (server/documents.py keeps each caller's apart).
        self._owner_of = owner_of

    async def on_execute(self) -> AsyncIterator[None]:
        await self._check()
        yield

    async def _check(self) -> None:
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document else None
        if document is None or operation is None or not self._sources:
            return  # graphql-core reports what is wrong with the document itself
        try:
            plan = self._plan(document, operation)
        except TooIntricate as exc:
            raise too_complex(str(exc)) from None
        consulted: set[str] = set()
        problem = self._problem(self._cost(plan, consulted, assumed=True))
        if problem is None:
            return
        unknown = [n for n in consulted if not self._sources[n].bounds.known()]
        # Refused on assumptions, but it would pass on a small enough cluster: look at the
        # clusters (one snapshot each, what any query of them fetches anyway) and decide on
        # their real size. A document too costly whatever the size is refused right away.
        small = self._problem(self._cost(plan, set(), assumed=False)) is None
        if unknown and small:
            # Only the lists the document names bound its cost: a query of nodes alone reads no
            # job queue to be costed. The snapshot is adopted by the request below, so it holds
            # every dataset any field names (a Slurm version, say), which covers its own plan.
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            look = datasets_named(operation, fragments)
            # A request that sees some jobs only is costed blind to the queue's length (below):
            # its look reads the jobs it may see, as its own plan would.
            request = context.context
            scope = (
                EVERY_JOB.seen_by(request.visibility)
                if isinstance(request, RequestContext)
                else EVERY_JOB
            )
            try:
                looked = await asyncio.gather(*(self._sources[n].get(look, scope) for n in unknown))
            except Exception as exc:  # the assumptions stand; the request reports the refusal
                logger.warning(
                    "could not read the size of %s: %s", ", ".join(unknown), loggable(exc)
                )
            else:
                problem = self._problem(self._cost(plan, set(), assumed=True))
                # The request reads what it was costed by: no second fetch, even without a cache
                # (a WebSocket's context is shared by its operations, and keeps none).
                if isinstance(request, RequestContext) and not getattr(
                    request, "per_connection", False
                ):
                    for snapshot in looked:
                        request.adopt(snapshot)
        if problem is not None:
            raise too_complex(problem)

    def _sees_only_some_jobs(self) -> bool:
        request = self.execution_context.context
        return isinstance(request, RequestContext) and not request.visibility.everyone

    def _plan(self, document: DocumentNode, operation: OperationDefinitionNode) -> CostPlan:
        """The operation's cost plan: the one kept with its document, or worked out now."""
        context = self.execution_context
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        schema = context.schema._schema  # graphql-core's schema

        def make() -> CostPlan:
            return CostPlan.of(schema, operation, fragments, self._limits.max_page_size)

        if self._documents is None or not context.query:
            return make()
        request = context.context
        owner = (
            self._owner_of(request)
            if self._owner_of is not None and isinstance(request, RequestContext)
            else None
        )
        return self._documents.cost_plan(
            context.query, document, context.operation_name, make, owner
        )

    def _cost(self, plan: CostPlan, consulted: set[str], assumed: bool) -> Cost:
        """The cost with what the snapshots told; unknown sizes taken as the assumptions, or
        (not `assumed`) as empty, to tell whether knowing them could let the document pass."""
        limits, sources = self._limits, self._sources
        names = tuple(sources)
        nodes, jobs = (limits.assumed_nodes, limits.assumed_jobs) if assumed else (0, 0)
        blind = self._sees_only_some_jobs()

        def complete(name: str) -> ListBounds:
            consulted.add(name)
            found = sources[name].bounds.or_assumed(nodes, jobs)
            # The cluster's job count includes jobs this request may not see (visibility
            # `own`): cost its lists by the page-size limit instead, which tells nothing.
            return found.blind_to_jobs(limits.max_page_size) if blind else found

        def widest() -> ListBounds:
            return reduce(ListBounds.widest, (complete(n) for n in names))

        def bounds_of(name: str | None) -> ListBounds:
            if name is None:
                return complete(names[0])
            return complete(name) if name in sources else widest()

        variables = self.execution_context.variables  # as sent: graphql-core coerces them later
        return plan.evaluate(
            variables if isinstance(variables, Mapping) else {}, bounds_of, widest, len(names)
        )

    def _problem(self, found: Cost) -> str | None:
        limits = self._limits
        if found.cost > limits.max_cost:
            return f"query cost {found.cost} exceeds {limits.max_cost}"
        if found.output_reads > limits.max_output_reads:
            reads, most = found.output_reads, limits.max_output_reads
            return f"query reads output {reads} times, more than {most}"
        if found.output_bytes > limits.max_output_bytes:
            return (
                f"query asks for {found.output_bytes} bytes of output, more than "
                f"{limits.max_output_bytes}"
            )
        return None


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})
