"""The cost of one operation, from its text, the schema and how long the cluster's lists are.

Each field costs 1, and a field that returns a list costs its sub-selection once per item the
list may hold; lists nest, so costs multiply. How many items a list may hold is a real bound:
a page of jobs holds at most `first` (the page-size limit when it is absent), every other list
as many as the cluster had in its last snapshot (resolvers/bounds.py): a cluster's nodes, a
node's jobs (the most any node had), a job's nodes, and so on. Lists of scalars (a node's
features) cost 1, like any scalar.

Reads of job output are counted on the way, with the bytes they ask for (`tailBytes` times the
number of jobs they may cover), so a document that would read too much is refused whole.

Pure: no I/O, so it runs on every request before anything reaches a head node.
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
    value_from_ast_untyped,
)

from resolvers.bounds import ListBounds
from resolvers.global_ids import MAX_IDS
from resolvers.output import DEFAULT_TAIL_BYTES, MAX_TAIL_BYTES
from schema.enums import JobState, NodeState

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
    values = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    values.update(variables)
    root = schema.get_root_type(operation.operation)
    walker = _Walker(schema, fragments, values, max_page_size, clusters)
    total = Cost(0)
    for field in walker.fields(operation.selection_set):
        arguments = walker.arguments(field)
        name = field.name.value
        if name in ("clusters", "node", "nodes"):  # global ids may name any cluster
            bounds = widest()
        else:
            chosen = arguments.get("name" if name == "cluster" else "cluster")
            bounds = bounds_of(chosen if isinstance(chosen, str) else None)
        walker.bounds = bounds
        total += walker.field_cost(root, field, max_page_size)
    return total


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        max_page_size: int,
        clusters: int,
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = dict(variables)
        self._max_page_size = max_page_size
        self._clusters = clusters
        self.bounds = ListBounds()
        # A fragment spread many times (and spreading others) is costed once per place.
        self._memo: dict[tuple[str, str, int, ListBounds], Cost] = {}
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

    def arguments(self, field: FieldNode) -> dict[str, Any]:
        return {
            argument.name.value: value_from_ast_untyped(argument.value, self._variables)
            for argument in field.arguments or ()
        }

    def field_cost(self, parent: GraphQLNamedType | None, field: FieldNode, page: int) -> Cost:
        name = field.name.value
        definition = getattr(parent, "fields", {}).get(name) or META_FIELDS.get(name)
        if definition is None:  # __typename, or a field validation has already refused
            return Cost(1)
        named = get_named_type(definition.type)
        own = Cost(1)
        parent_name = parent.name if parent is not None else ""  # None: a meta field's parent
        if (parent_name, name) == OUTPUT:
            tail = self.arguments(field).get("tailBytes", DEFAULT_TAIL_BYTES)
            tail = tail if isinstance(tail, int) else DEFAULT_TAIL_BYTES
            own = Cost(1, 1, max(0, min(tail, MAX_TAIL_BYTES)))
        if named.name == PAGED[0]:
            first = self.arguments(field).get(PAGED[1])
            page = self._max_page_size
            if isinstance(first, int) and not isinstance(first, bool):
                page = max(0, min(first, self._max_page_size))
        if field.selection_set is None or is_leaf_type(named):
            return own
        items = self._items(parent_name, name, definition.type, page)
        if LIST_BOUNDS.get((parent_name, name)) == IDS:
            ids = self.arguments(field).get("ids")
            items = min(len(ids) if isinstance(ids, list) else 1, MAX_IDS)
        return own + self.selection_cost(named, field.selection_set, page).times(items)

    def selection_cost(
        self,
        parent: GraphQLNamedType,
        selection_set: SelectionSetNode,
        page: int,
        seen: frozenset[str] = frozenset(),
    ) -> Cost:
        total = Cost(0)
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(parent, selection, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self._schema.get_type(condition.name.value) if condition else parent
                total += self.selection_cost(inner or parent, selection.selection_set, page, seen)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread_cost(parent, selection.name.value, page, seen)
        return total

    def _spread_cost(
        self, parent: GraphQLNamedType, name: str, page: int, seen: frozenset[str]
    ) -> Cost:
        fragment = self._fragments.get(name)
        if fragment is None or name in seen:
            return Cost(0)
        key = (name, parent.name, page, self.bounds)
        cached = self._memo.get(key)
        if cached is None:
            inner = self._schema.get_type(fragment.type_condition.name.value) or parent
            cached = self.selection_cost(inner, fragment.selection_set, page, seen | {name})
            self._memo[key] = cached
        return cached

    def _items(self, parent: str, name: str, type_: GraphQLOutputType, page: int) -> int:
        """How many items the field's value may hold: 1 unless it is a list."""
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if not isinstance(type_, GraphQLList):
            return 1
        if (parent, name) in INTROSPECTION_BOUNDS:
            return self._schema_sizes()[INTROSPECTION_BOUNDS[(parent, name)]]
        bound = LIST_BOUNDS.get((parent, name))
        if bound == PAGE:
            return page
        if bound == "clusters":
            return self._clusters
        if bound == STEPS:
            return STEPS_PER_JOB
        if bound == ACCOUNTING:
            return ACCOUNTING_ITEMS
        if bound in ENUM_BOUNDS:
            return ENUM_BOUNDS[bound]
        if bound == IDS:
            return 1  # counted from the field's own argument (field_cost)
        if bound is not None:
            value = getattr(self.bounds, bound)
            return int(value) if value is not None else self._largest(page)
        return self._largest(page)

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

    def _largest(self, page: int) -> int:
        known = [getattr(self.bounds, f.name) or 0 for f in fields(self.bounds)]
        return max([page, self._clusters, *known])
