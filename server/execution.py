"""A leaner execution of simple fields, inside strawberry and graphql-core's executor.

graphql-core completes every field the same general way: it builds a resolve-info object, calls
the resolver through strawberry's wrapper, checks for awaitables, then dispatches on the return
type. That costs about 10 us a field, so a listing of 10,000 jobs with 10 fields spent over a
second there. Here a field whose value comes from a plain attribute or a `self`-only method (a
job's name, an edge's node, a job's nodes) is read directly, the same call strawberry would
make, and then completed directly: a scalar or enum by the same output coercion graphql-core
applies, an object (or a list of non-null objects) by executing its sub-selection.

Anything else takes graphql-core's own path, and so does a field the shortcut cannot complete
(a null for a non-null field, a value that will not coerce), so results and errors are the same.
Such getters must be free of side effects: one that fails is called again on the general path.

Fields are counted against the execution's budget (server/budget.py) where they are completed:
in `execute_fields`, and per item of a list (the items of a compiled list in one count each). A
list whose turn of the event loop is used up continues, from the item it reached, in a later one.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetails, GroupedFieldSet
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.types.field import StrawberryField

from server.budget import Budget, BudgetedExecutionContext

_BACKREF = "strawberry-definition"


class _Kind(enum.Enum):
    LEAF = enum.auto()
    OBJECT = enum.auto()
    OBJECTS = enum.auto()


class _Shortcut(NamedTuple):
    kind: _Kind
    read: Callable[[Any], Any]
    nullable: bool
    return_type: GraphQLOutputType
    coerce: Callable[[Any], Any] | None = None
    object_type: GraphQLObjectType | None = None


def _shortcut_for(field: GraphQLField | None) -> _Shortcut | None:
    """How to complete `field` without the general machinery, or None if it needs it."""
    definition = (field.extensions or {}).get(_BACKREF) if field is not None else None
    if field is None or not isinstance(definition, StrawberryField) or definition.extensions:
        return None
    read = _reader(definition, field)
    if read is None:
        return None
    inner, nullable = field.type, True
    if isinstance(inner, GraphQLNonNull):
        inner, nullable = inner.of_type, False
    if is_leaf_type(inner):
        coerce = inner.coerce_output_value
        return _Shortcut(_Kind.LEAF, read, nullable, field.type, coerce=coerce)
    if isinstance(inner, GraphQLObjectType) and inner.is_type_of is None:
        return _Shortcut(_Kind.OBJECT, read, nullable, field.type, object_type=inner)
    if isinstance(inner, GraphQLList) and isinstance(inner.of_type, GraphQLNonNull):
        item = inner.of_type.of_type
        if isinstance(item, GraphQLObjectType) and item.is_type_of is None:
            return _Shortcut(_Kind.OBJECTS, read, nullable, field.type, object_type=item)
    return None


def _reader(definition: StrawberryField, field: GraphQLField) -> Callable[[Any], Any] | None:
    resolver = definition.base_resolver
    if resolver is None:
        # strawberry's default resolver is getattr(source, python_name).
        basic = getattr(field.resolve, "_is_default", False)
        return attrgetter(definition.python_name) if basic else None
    # A synchronous method taking only `self`: strawberry calls it with the source as self.
    function = resolver.wrapped_func
    parameters = resolver.signature.parameters
    if resolver.is_async or len(parameters) != 1 or resolver.self_parameter is None:
        return None
    return function if callable(function) else None


def _never(value: Any) -> Any:
    raise AssertionError("not a shortcut step")


# (response name, field details, kind or None, read, coerce, nullable, shortcut or None).
# The shortcut's own fields are copied into the tuple on purpose: execute_fields unpacks it once
# per field of every listed object, and attribute lookups there cost measurable time.
_Step = tuple[
    str, list[FieldDetails], _Kind | None, Callable[[Any], Any], Callable[[Any], Any], bool,
    _Shortcut | None,
]  # fmt: skip


# (response name, read, coerce, nullable, nested steps for an object field or None for a scalar)
_Compiled = list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], bool, Any]]


def _build(steps: _Compiled, source: Any) -> dict[str, Any]:
    """One object's result from compiled steps; raises if any field needs the general path."""
    result: dict[str, Any] = {}
    for name, read, coerce, nullable, inner in steps:
        value = read(source)
        if value is None:
            if not nullable:
                raise _NeedsGeneralPath
            result[name] = None
        elif inner is None:
            coerced = coerce(value)
            if coerced is None or coerced is Undefined:
                raise _NeedsGeneralPath
            result[name] = coerced
        else:
            result[name] = _build(inner, value)
    return result


def _weight(steps: _Compiled | None) -> int:
    """Fields one object built from `steps` resolves, nested objects included."""
    return sum(1 + (_weight(inner) if inner is not None else 0) for *_, inner in steps or ())


class _NeedsGeneralPath(Exception):
    """A compiled step met a value only graphql-core's path completes (and reports) correctly."""


class FieldShortcuts:
    """Each field's shortcut (or None), by type and field name, for one schema: what
    `_shortcut_for` decides depends on the field's definition alone, and deciding it took 3-5 us
    a field on every execution (a job(id) query's 12 fields: 40-55 us). Filled as fields are
    first executed; only fields the schema has are kept (at most one entry each), so its size is
    bounded by the schema, whatever documents clients send. Results do not depend on who asks."""

    def __init__(self) -> None:
        self.schema: GraphQLSchema | None = None
        self.table: dict[tuple[str, str], _Shortcut | None] = {}

    def of(self, schema: GraphQLSchema, parent: GraphQLObjectType, name: str) -> _Shortcut | None:
        if self.schema is None:
            self.schema = schema
        key = (parent.name, name)
        if schema is self.schema and key in self.table:
            return self.table[key]
        field = schema.get_field(parent, name)
        shortcut = _shortcut_for(field)
        if schema is self.schema and field is not None:
            self.table[key] = shortcut
        return shortcut


class LeanExecutionContext(BudgetedExecutionContext):
    """graphql-core's executor with simple fields completed directly (the module's docstring)."""

    # A class from with_budget executes the one schema of its app, and keeps that schema's
    # shortcuts for the app's life (app.state.field_shortcuts); this class itself keeps none.
    shortcuts: ClassVar[FieldShortcuts | None] = None

    @classmethod
    def with_budget(cls, budget: Budget) -> type[LeanExecutionContext]:
        executor = type(cls.__name__, (cls,), {"budget": budget, "shortcuts": FieldShortcuts()})
        assert issubclass(executor, LeanExecutionContext)
        return executor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Keyed by the identity of a grouped field set, which graphql-core memoises per
        # (type, selection): every item of a list shares one plan. The set is kept alive with
        # its plan so that its id cannot be reused during this execution.
        self._plans: dict[int, tuple[GroupedFieldSet, list[_Step]]] = {}
        self._compiled_sets: dict[int, tuple[GroupedFieldSet, _Compiled | None, int]] = {}

    def _forget_per_event_caches(self) -> None:
        super()._forget_per_event_caches()
        self._plans = {}
        self._compiled_sets = {}

    def _plan(self, parent: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Step]:
        cached = self._plans.get(id(fields))
        if cached is not None:
            return cached[1]
        plan: list[_Step] = []
        for name, details in fields.items():
            field_name = details[0].node.name.value
            if self.shortcuts is None:
                shortcut = _shortcut_for(self.schema.get_field(parent, field_name))
            else:
                shortcut = self.shortcuts.of(self.schema, parent, field_name)
            if shortcut is None:
                plan.append((name, details, None, _never, _never, False, shortcut))
            else:
                coerce = shortcut.coerce or _never
                step = (name, details, shortcut.kind, shortcut.read, coerce, shortcut.nullable)
                plan.append((*step, shortcut))
        self._plans[id(fields)] = (fields, plan)
        return plan

    # The hot loop of every listing: its branches are inlined on purpose (a call per field of
    # every listed object costs measurable time), so it stays one function.
    def _execute_fields_now(  # noqa: PLR0912
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        # Strawberry always passes a manager; it only wraps resolvers when it holds middleware
        # (an extension with a resolve hook), and then every field must go through it.
        if self.middleware_manager is not None and self.middleware_manager.middlewares:
            return super()._execute_fields_now(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        plan = self._plan(parent_type, grouped_field_set)
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for name, details, kind, read, coerce, nullable, shortcut in plan:
                if kind is _Kind.LEAF:
                    # Inlined: this branch runs once per scalar of every listed object.
                    try:
                        value = read(source_value)
                        coerced = None if value is None else coerce(value)
                    except Exception:  # the general path below reports it
                        value = coerced = Undefined
                    if value is None and nullable:
                        results[name] = None
                        continue
                    if coerced is not None and coerced is not Undefined:
                        results[name] = coerced
                        continue
                elif shortcut is not None:
                    result = self._shortcut(
                        shortcut, source_value, details, path, name, parent_type
                    )
                    if result is not Undefined:
                        results[name] = result
                        if self.is_awaitable(result):
                            pending.append(name)
                        continue
                field_path = Path(path, name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, details, field_path, position_context
                )
                if result is not Undefined:
                    results[name] = result
                    if self.is_awaitable(result):
                        pending.append(name)
        except Exception:
            # As graphql-core does: let awaitables other fields created settle on their own.
            if pending:
                self.settle_in_background([results[name] for name in pending])
            raise
        if not pending:
            return results
        return self._await_fields(results, pending)

    def _shortcut(
        self,
        shortcut: _Shortcut,
        source: Any,
        details: list[FieldDetails],
        path: Path | None,
        name: str,
        parent_type: GraphQLObjectType,
    ) -> Any:
        """An object or list of objects completed, or Undefined when the general path must."""
        try:
            value = shortcut.read(source)
        except Exception:
            return Undefined
        if value is None:
            return None if shortcut.nullable else Undefined
        object_type = shortcut.object_type
        assert object_type is not None
        collected = self.collect_subfields(object_type, details)
        if collected.new_defer_usages:
            return Undefined
        fields = collected.grouped_field_set
        field_path = Path(path, name, parent_type.name)
        try:
            if shortcut.kind is _Kind.OBJECT:
                completed = self.execute_fields(object_type, value, field_path, fields, None)
            else:
                values = value if isinstance(value, list | tuple) else list(value)
                # Making a list costs about as much per item as a field: count them as such, or
                # lists of thousands read one after another would go unnoticed between looks.
                self._tick(len(values))
                completed = self._complete_items(object_type, values, field_path, fields, [])
        except Exception as raw_error:
            # Exactly what graphql-core's execute_field does with an error in a sub-selection.
            self.handle_field_error(raw_error, shortcut.return_type, details, field_path)
            return None
        if self.is_awaitable(completed):
            return self._guard(completed, shortcut.return_type, details, field_path)
        return completed

    def _complete_items(
        self,
        object_type: GraphQLObjectType,
        values: Sequence[Any],
        field_path: Path,
        fields: GroupedFieldSet,
        items: list[Any],
    ) -> Any:
        """The items of a list of objects from `len(items)` on: built from compiled steps where
        they can be, else executed; continued in a later turn when this one is used up."""
        compiled, weight = self._compiled_with_weight(object_type, fields)
        try:
            for index in range(len(items), len(values)):
                if self._waiting_turn:
                    return self._items_later(object_type, values, field_path, fields, items)
                item = values[index]
                if compiled is not None:
                    try:
                        built: Any = _build(compiled, item)
                    except Exception:  # the general path below reports it
                        built = Undefined
                    if built is not Undefined:
                        items.append(built)
                        self._tick(weight)
                        continue
                item_path = Path(field_path, index, None)
                items.append(self.execute_fields(object_type, item, item_path, fields, None))
        except Exception:
            # As graphql-core does: items already under way settle on their own.
            started = [item for item in items if self.is_awaitable(item)]
            if started:
                self.settle_in_background(started)
            raise
        waiting = [i for i, item in enumerate(items) if self.is_awaitable(item)]
        return self._await_items(items, waiting) if waiting else items

    async def _items_later(
        self,
        object_type: GraphQLObjectType,
        values: Sequence[Any],
        field_path: Path,
        fields: GroupedFieldSet,
        items: list[Any],
    ) -> Any:
        try:
            await self._next_turn()
        except BaseException:
            # The items made before the pause must still settle, as _complete_items does.
            started = [item for item in items if self.is_awaitable(item)]
            if started:
                self.settle_in_background(started)
            raise
        try:
            result = self._complete_items(object_type, values, field_path, fields, items)
        finally:
            self._release()
        return await result if self.is_awaitable(result) else result

    def _compiled_with_weight(
        self, object_type: GraphQLObjectType, fields: GroupedFieldSet
    ) -> tuple[_Compiled | None, int]:
        """The compiled selection and how many fields building one item resolves."""
        self._compiled(object_type, fields)
        _, compiled, weight = self._compiled_sets[id(fields)]
        return compiled, weight

    def _compiled(
        self, object_type: GraphQLObjectType, fields: GroupedFieldSet
    ) -> _Compiled | None:
        """The selection as nested steps if every field in it, at every depth, is a scalar or an
        object read by a shortcut; None otherwise. Items of a list are then built in one tight
        loop, with no path or plan lookups, which is what a listing of thousands of jobs needs."""
        key = id(fields)
        if key in self._compiled_sets:
            return self._compiled_sets[key][1]
        compiled = self._compile(object_type, fields)
        self._compiled_sets[key] = (fields, compiled, _weight(compiled))
        return compiled

    def _compile(self, object_type: GraphQLObjectType, fields: GroupedFieldSet) -> _Compiled | None:
        steps: _Compiled = []
        for name, details, kind, read, coerce, nullable, shortcut in self._plan(
            object_type, fields
        ):
            if kind is _Kind.LEAF:
                steps.append((name, read, coerce, nullable, None))
                continue
            if kind is _Kind.OBJECT and shortcut is not None and shortcut.object_type is not None:
                collected = self.collect_subfields(shortcut.object_type, details)
                if not collected.new_defer_usages:
                    inner = self._compiled(shortcut.object_type, collected.grouped_field_set)
                    if inner is not None:
                        steps.append((name, read, _never, nullable, inner))
                        continue
            return None
        return steps

    async def _guard(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        details: Sequence[FieldDetails],
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, details, path)
            return None

    @staticmethod
    async def _await_items(items: list[Any], waiting: list[int]) -> list[Any]:
        values = await gather_with_cancel(*(items[i] for i in waiting))
        for index, value in zip(waiting, values, strict=True):
            items[index] = value
        return items

    @staticmethod
    async def _await_fields(results: dict[str, Any], pending: list[str]) -> dict[str, Any]:
        """Await the asynchronous fields concurrently, as graphql-core's execute_fields does."""
        if len(pending) == 1:
            results[pending[0]] = await results[pending[0]]
        else:
            values = await gather_with_cancel(*(results[name] for name in pending))
            results.update(zip(pending, values, strict=True))
        return results
