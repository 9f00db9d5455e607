"""The cost of one operation, from its text, the schema and how long the cluster's lists are.

Each field costs 1, and a field that returns a list costs its sub-selection once per item the
list may hold; lists nest, so costs multiply. How many items a list may hold is a real bound:
a page of jobs holds at most `first` (the page-size limit when it is absent), every other list
as many as the cluster had in its last snapshot (resolvers/bounds.py): a cluster's nodes, a
node's jobs (the most any node had), a job's nodes, and so on. Lists of scalars (a node's
features) cost 1, like any scalar.

Reads of job output are counted on the way, with the bytes they ask for (`tailBytes` times the
number of jobs they may cover), so a document that would read too much is refused whole.

Pure: no I/O, so it runs on every request before anything reaches a head node. The walk of the
document happens once (CostPlan.of): it yields the cost as a sum of products of list lengths,
which each request evaluates with the lengths it sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    get_named_type,
    is_leaf_type,
    print_ast,
    value_from_ast_untyped,
)

from resolvers.bounds import ListBounds
from resolvers.global_ids import MAX_IDS
from resolvers.output import DEFAULT_TAIL_BYTES, MAX_TAIL_BYTES
from schema.enums import JobState, NodeState
from slurm_graphql.errors import SlurmGraphQLError

PAGE = "page"
# A job's steps are known only once sacct has answered: costed as this many (batch, extern and a
# few sruns); the execution budget (server/execution.py) stops a job with thousands.
STEPS = "steps"
STEPS_PER_JOB = 8
# Accounts, QOS and a user's associations: configuration an administrator writes, costed as this
# many each (no snapshot counts them).
ACCOUNTING = "accounting"
ACCOUNTING_ITEMS = 100
IDS = "ids"  # as many items as the ids asked for
# (type, field) -> which bound its list has. Every list of objects in the schema is named here
# (a test walks the schema to keep it so); an unnamed one would take the largest bound.
LIST_BOUNDS: Mapping[tuple[str, str], str] = {
    ("Query", "clusters"): "clusters",
    ("Cluster", "partitions"): "partitions",
    ("Cluster", "nodes"): "nodes",
    ("Partition", "nodes"): "nodes_per_partition",
    ("ComputeNode", "partitions"): "partitions_per_node",
    ("ComputeNode", "jobs"): "jobs_per_node",
    ("Job", "nodes"): "nodes_per_job",
    ("Job", "steps"): STEPS,
    ("Cluster", "accounts"): ACCOUNTING,
    ("Cluster", "qos"): ACCOUNTING,
    ("Viewer", "associations"): ACCOUNTING,
    ("JobConnection", "edges"): PAGE,
    ("Query", "nodes"): IDS,
    ("Stats", "jobsByState"): "job_states",
    ("Stats", "jobsByUser"): "jobs",
    ("Stats", "nodesByState"): "node_states",
}
# Lists as long as an enum: one item per value at most.
ENUM_BOUNDS = {"job_states": len(JobState), "node_states": len(NodeState)}
# Introspection lists are as long as the schema makes them (GraphiQL's own query costs ~100,000).
INTROSPECTION_BOUNDS: Mapping[tuple[str, str], str] = {
    ("__Schema", "types"): "types",
    ("__Schema", "directives"): "directives",
    ("__Type", "fields"): "fields",
    ("__Type", "interfaces"): "interfaces",
    ("__Type", "possibleTypes"): "possible_types",
    ("__Type", "enumValues"): "enum_values",
    ("__Type", "inputFields"): "input_fields",
    ("__Field", "args"): "arguments",
    ("__Directive", "args"): "arguments",
}
META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}
PAGED = ("JobConnection", "first")  # the connection type, and its page-size argument
OUTPUT = ("Job", "output")


@dataclass(frozen=True)
class Cost:
    cost: int
    output_reads: int = 0
    output_bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.cost + other.cost,
            self.output_reads + other.output_reads,
            self.output_bytes + other.output_bytes,
        )

    def times(self, items: int) -> Cost:
        return Cost(self.cost * items, self.output_reads * items, self.output_bytes * items)


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    bounds_of: Callable[[str | None], ListBounds],
    widest: Callable[[], ListBounds],
    clusters: int,
    max_page_size: int,
) -> Cost:
    """The cost of `operation`. `bounds_of(name)` gives one cluster's complete bounds (None:
    the default cluster), `widest()` the largest of every cluster's (for `clusters`, and for a
    name that is not configured), `clusters` how many there are."""
    plan = CostPlan.of(schema, operation, fragments, max_page_size)
    return plan.evaluate(variables, bounds_of, widest, clusters)


# One factor of a term: what a list's length (or an output read's bytes) depends on, named by
# what decides it: ("page", first), ("bound", selector, bound, first), ("largest", selector,
# first), ("ids", ids), ("tail", tailBytes), ("clusters",). An argument is named by its printed
# value ("" when absent), a root field's clusters by its selector: "*" (every cluster) or "="
# and its cluster argument.
Factor = tuple[str, ...]
Term = tuple[Factor, ...]
# A document costing more terms than this is refused (QUERY_TOO_COMPLEX) rather than costed: each
# term is a distinct product of list lengths, and only a document built to multiply them has many.
MAX_TERMS = 4096


class TooIntricate(SlurmGraphQLError):
    """The cost of a document has more than MAX_TERMS terms."""


class CostPlan:
    """The cost of one operation as a sum of products of list lengths, worked out once from the
    document and the schema; `evaluate` puts in the lengths a request sees (the cluster's size
    in its last snapshot, its variables) with a few multiplications, and no walk of the
    document. Documents kept by server/documents.py keep their plans, so a document sent again
    (a persisted one, by its hash) is costed once, however often it runs."""

    def __init__(self, terms: dict[Term, Cost], values: dict[str, Any], defaults: dict[str, Any],
                 max_page_size: int) -> None:  # fmt: skip
        self.terms = terms
        self._values = values  # printed argument -> its value node, evaluated per request
        self._defaults = defaults
        self._max_page_size = max_page_size

    @classmethod
    def of(
        cls,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        max_page_size: int,
    ) -> CostPlan:
        """The plan of `operation`; TooIntricate past MAX_TERMS terms."""
        defaults = {
            d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }
        root = schema.get_root_type(operation.operation)
        walker = _Walker(schema, fragments)
        total: dict[Term, Cost] = {}
        for field in walker.fields(operation.selection_set):
            name = field.name.value
            if name in ("clusters", "node", "nodes"):  # global ids may name any cluster
                walker.selector = "*"
            else:
                walker.selector = "=" + walker.argument(
                    field, "name" if name == "cluster" else "cluster"
                )
            _add(total, walker.field_cost(root, field, ""))
        return cls(total, walker.values, defaults, max_page_size)

    def evaluate(
        self,
        variables: Mapping[str, Any],
        bounds_of: Callable[[str | None], ListBounds],
        widest: Callable[[], ListBounds],
        clusters: int,
    ) -> Cost:
        """The cost for a request with these variables and cluster sizes (see operation_cost)."""
        known = {**self._defaults, **variables}
        found: dict[Factor, int] = {}
        selected: dict[str, ListBounds] = {}

        def value(printed: str) -> Any:
            node = self._values.get(printed)
            return None if node is None else value_from_ast_untyped(node, known)

        def page(printed: str) -> int:
            first = value(printed)
            if isinstance(first, int) and not isinstance(first, bool):
                return max(0, min(first, self._max_page_size))
            return self._max_page_size

        def bounds(selector: str) -> ListBounds:
            if selector not in selected:
                chosen = value(selector[1:]) if selector != "*" else None
                selected[selector] = (
                    widest()
                    if selector == "*"
                    else bounds_of(chosen if isinstance(chosen, str) else None)
                )
            return selected[selector]

        def largest(selector: str, first: str) -> int:
            sizes = bounds(selector)
            known_sizes = [getattr(sizes, f.name) or 0 for f in fields(sizes)]
            return max([page(first), clusters, *known_sizes])

        def factor(key: Factor) -> int:
            kind = key[0]
            if kind == "page":
                return page(key[1])
            if kind == "bound":
                bound = getattr(bounds(key[1]), key[2])
                return int(bound) if bound is not None else largest(key[1], key[3])
            if kind == "largest":
                return largest(key[1], key[2])
            if kind == "ids":
                ids = value(key[1])
                return min(len(ids) if isinstance(ids, list) else 1, MAX_IDS)
            if kind == "tail":
                tail = value(key[1]) if key[1] else DEFAULT_TAIL_BYTES
                tail = tail if isinstance(tail, int) else DEFAULT_TAIL_BYTES
                return max(0, min(tail, MAX_TAIL_BYTES))
            return clusters

        total = Cost(0)
        for term, coefficient in self.terms.items():
            items = 1
            for key in term:
                if key not in found:
                    found[key] = factor(key)
                items *= found[key]
            total += coefficient.times(items)
        return total


def _add(total: dict[Term, Cost], more: Mapping[Term, Cost]) -> None:
    for term, cost in more.items():
        total[term] = total[term] + cost if term in total else cost
    if len(total) > MAX_TERMS:
        raise TooIntricate(f"the cost of the document has more than {MAX_TERMS} terms")


def _times(terms: Mapping[Term, Cost], items: int | Factor) -> dict[Term, Cost]:
    if isinstance(items, int):
        return {term: cost.times(items) for term, cost in terms.items()}
    return {tuple(sorted((*term, items))): cost for term, cost in terms.items()}


class _Walker:
    def __init__(
        self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode]
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self.selector = "*"  # the current root field's clusters (see Factor)
        self.values: dict[str, Any] = {}
        # A fragment spread many times (and spreading others) is costed once per place.
        self._memo: dict[tuple[str, str, str, str], dict[Term, Cost]] = {}
        self._sizes: dict[str, int] | None = None

    def fields(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str] = frozenset()
    ) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found.extend(self.fields(selection.selection_set, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is not None and name not in seen:
                    found.extend(self.fields(fragment.selection_set, seen | {name}))
        return found

    def argument(self, field: FieldNode, name: str) -> str:
        """The argument's value, printed ("" when absent); its node kept to evaluate it later."""
        for argument in field.arguments or ():
            if argument.name.value == name:
                printed = print_ast(argument.value)
                self.values[printed] = argument.value
                return printed
        return ""

    def field_cost(
        self, parent: GraphQLNamedType | None, field: FieldNode, page: str
    ) -> dict[Term, Cost]:
        name = field.name.value
        definition = getattr(parent, "fields", {}).get(name) or META_FIELDS.get(name)
        if definition is None:  # __typename, or a field validation has already refused
            return {(): Cost(1)}
        named = get_named_type(definition.type)
        own: dict[Term, Cost] = {(): Cost(1)}
        parent_name = parent.name if parent is not None else ""  # None: a meta field's parent
        if (parent_name, name) == OUTPUT:
            tail = self.argument(field, "tailBytes")
            own = {(): Cost(1, 1), (("tail", tail),): Cost(0, 0, 1)}
        if named.name == PAGED[0]:
            page = self.argument(field, PAGED[1])
        if field.selection_set is None or is_leaf_type(named):
            return own
        items = self._items(parent_name, name, definition.type, page)
        if LIST_BOUNDS.get((parent_name, name)) == IDS:
            items = ("ids", self.argument(field, "ids"))
        inner = self.selection_cost(named, field.selection_set, page)
        _add(own, _times(inner, items))
        return own

    def selection_cost(
        self,
        parent: GraphQLNamedType,
        selection_set: SelectionSetNode,
        page: str,
        seen: frozenset[str] = frozenset(),
    ) -> dict[Term, Cost]:
        total: dict[Term, Cost] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                _add(total, self.field_cost(parent, selection, page))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self._schema.get_type(condition.name.value) if condition else parent
                _add(
                    total, self.selection_cost(inner or parent, selection.selection_set, page, seen)
                )
            elif isinstance(selection, FragmentSpreadNode):
                _add(total, self._spread_cost(parent, selection.name.value, page, seen))
        return total

    def _spread_cost(
        self, parent: GraphQLNamedType, name: str, page: str, seen: frozenset[str]
    ) -> dict[Term, Cost]:
        fragment = self._fragments.get(name)
        if fragment is None or name in seen:
            return {}
        key = (name, parent.name, page, self.selector)
        cached = self._memo.get(key)
        if cached is None:
            inner = self._schema.get_type(fragment.type_condition.name.value) or parent
            cached = self.selection_cost(inner, fragment.selection_set, page, seen | {name})
            self._memo[key] = cached
        return cached

    def _items(self, parent: str, name: str, type_: GraphQLOutputType, page: str) -> int | Factor:
        """How many items the field's value may hold: 1 unless it is a list."""
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if not isinstance(type_, GraphQLList):
            return 1
        if (parent, name) in INTROSPECTION_BOUNDS:
            return self._schema_sizes()[INTROSPECTION_BOUNDS[(parent, name)]]
        bound = LIST_BOUNDS.get((parent, name))
        if bound == PAGE:
            return ("page", page)
        if bound == "clusters":
            return ("clusters",)
        if bound == STEPS:
            return STEPS_PER_JOB
        if bound == ACCOUNTING:
            return ACCOUNTING_ITEMS
        if bound in ENUM_BOUNDS:
            return ENUM_BOUNDS[bound]
        if bound == IDS:
            return 1  # counted from the field's own argument (field_cost)
        if bound is not None:
            return ("bound", self.selector, bound, page)
        return ("largest", self.selector, page)

    def _schema_sizes(self) -> dict[str, int]:
        """The longest list of each kind introspection returns, from the schema itself."""
        if self._sizes is None:
            types = list(self._schema.type_map.values())
            object_fields = [
                t.fields for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)
            ]
            input_fields = [t.fields for t in types if isinstance(t, GraphQLInputObjectType)]
            self._sizes = {
                "types": len(self._schema.type_map),
                "directives": len(self._schema.directives),
                "interfaces": max(
                    (len(t.interfaces) for t in types if isinstance(t, GraphQLObjectType)),
                    default=0,
                ),
                "possible_types": max(
                    (
                        len(self._schema.get_possible_types(t))
                        for t in types
                        if isinstance(t, GraphQLUnionType | GraphQLInterfaceType)
                    ),
                    default=0,
                ),
                "fields": max(map(len, object_fields), default=0),
                "input_fields": max(map(len, input_fields), default=0),
                "enum_values": max(
                    (len(t.values) for t in types if isinstance(t, GraphQLEnumType)), default=0
                ),
                "arguments": max(
                    [len(f.args) for group in object_fields for f in group.values()]
                    + [len(d.args) for d in self._schema.directives],
                    default=0,
                ),
            }
        return self._sizes
