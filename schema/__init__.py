"""The public GraphQL contract: types only. Resolution lives in `resolvers/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext

from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.subscription import Subscription

UnexpectedErrors = Callable[[list[GraphQLError]], None]

# graphql-core quotes what the client sent in its messages ("Value 'AAAA…' is invalid"): a
# message is clipped so that an answer, and a log line, never echoes kilobytes of a caller's text.
MESSAGE_LIMIT = 300


def clip_message(error: GraphQLError) -> None:
    """`error`'s message cut to MESSAGE_LIMIT characters, saying how much was cut."""
    cut = len(error.message) - MESSAGE_LIMIT
    if cut > 0:
        error.message = f"{error.message[:MESSAGE_LIMIT]}… ({cut} more characters)"


class _Schema(strawberry.Schema):
    # Who logs unexpected errors: strawberry's own logger unless the server says otherwise.
    on_unexpected: UnexpectedErrors | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log what went wrong unexpectedly; a coded error is an answer to the client (a bad id,
        an unknown cluster), and a parse or validation error is the client's, not ours, and so
        is an operation type the protocol does not run (a query over graphql-ws): logged, any
        client could fill the log with tracebacks. Every message is clipped first (above)."""
        for error in errors:
            clip_message(error)
        unexpected = [
            error
            for error in errors
            if error.original_error is not None
            and not (error.extensions and "code" in error.extensions)
            and not isinstance(error.original_error, InvalidOperationTypeError)
        ]
        if self.on_unexpected is None:
            super().process_errors(unexpected, execution_context)
        elif unexpected:
            self.on_unexpected(unexpected)


def build_schema(
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    execution_context_class: type[StrawberryGraphQLCoreExecutionContext] | None = None,
    on_unexpected: UnexpectedErrors | None = None,
) -> strawberry.Schema:
    """The schema; `extensions` are factories, called once per request by strawberry;
    `on_unexpected` logs errors nobody expected (each once), in place of strawberry's logger."""
    schema = _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=list(extensions),
        execution_context_class=execution_context_class,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
    schema.on_unexpected = on_unexpected
    return schema
