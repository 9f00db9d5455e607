"""The public GraphQL contract: types only. Resolution lives in `resolvers/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.subscription import Subscription


def build_schema(
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    execution_context_class: type[StrawberryGraphQLCoreExecutionContext] | None = None,
) -> strawberry.Schema:
    """The schema; `extensions` are factories, called once per request by strawberry."""
    return strawberry.Schema(
        query=Query,
        subscription=Subscription,
        extensions=list(extensions),
        execution_context_class=execution_context_class,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
