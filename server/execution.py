"""A leaner execution of plain leaf fields, inside strawberry and graphql-core's executor.

graphql-core resolves every field the same general way: it builds a resolve-info object, calls
the resolver, checks for awaitables and completes the value. For a plain attribute holding a
scalar (a job's name, state, start time) that costs about 10 us, so a listing of 10,000 jobs with
10 fields spends a second there. Here such a field is read and serialised directly: the same
getattr strawberry's default resolver does and the same output coercion graphql-core applies.
Anything else, and any leaf the shortcut cannot complete (a null in a non-null field, a value
that does not serialise), takes graphql-core's own path, so results and errors are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    is_leaf_type,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# (python attribute, output coercion, nullable) for a field the shortcut may take.
_Leaf = tuple[str, Callable[[Any], Any], bool]
_BACKREF = "strawberry-definition"


def _leaf_of(field: GraphQLField | None) -> _Leaf | None:
    if field is None or not getattr(field.resolve, "_is_default", False):
        return None
    definition = (field.extensions or {}).get(_BACKREF)
    python_name = getattr(definition, "python_name", None)
    output_type, nullable = field.type, True
    if isinstance(output_type, GraphQLNonNull):
        output_type, nullable = output_type.of_type, False
    if python_name is None or not is_leaf_type(output_type):
        return None
    return python_name, output_type.coerce_output_value, nullable  # type: ignore[union-attr]


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Keyed by the identity of a grouped field set, which graphql-core memoises per
        # (type, selection): every item of a list shares one plan. The set is kept alive with
        # its plan so that its id cannot be reused during this execution.
        self._plans: dict[int, tuple[GroupedFieldSet, list[_Leaf | None]]] = {}

    def _plan(self, parent: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Leaf | None]:
        cached = self._plans.get(id(fields))
        if cached is not None:
            return cached[1]
        plan = [
            _leaf_of(self.schema.get_field(parent, details[0].node.name.value))
            for details in fields.values()
        ]
        self._plans[id(fields)] = (fields, plan)
        return plan

    def execute_fields(  # type: ignore[override]  # same signature, graphql-core's own types
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
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        plan = self._plan(parent_type, grouped_field_set)
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for (name, details), leaf in zip(grouped_field_set.items(), plan, strict=True):
                if leaf is not None:
                    python_name, coerce, nullable = leaf
                    value = getattr(source_value, python_name, None)
                    if value is None and nullable:
                        results[name] = None
                        continue
                    if value is not None:
                        try:
                            coerced = coerce(value)
                        except Exception:  # noqa: BLE001 - the general path reports it
                            coerced = None
                        if coerced is not None and coerced is not Undefined:
                            results[name] = coerced
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

    @staticmethod
    async def _await_fields(results: dict[str, Any], pending: list[str]) -> dict[str, Any]:
        """Await the asynchronous fields concurrently, as graphql-core's execute_fields does."""
        if len(pending) == 1:
            results[pending[0]] = await results[pending[0]]
        else:
            values = await gather_with_cancel(*(results[name] for name in pending))
            results.update(zip(pending, values, strict=True))
        return results
