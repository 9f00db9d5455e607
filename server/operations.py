"""Which operation a request document selects, read before anything executes.

The Lambda handler refuses subscriptions and the metrics label requests by operation name; both
need the selected operation of a document without executing it, and whether or not the schema
has the root type it names. Parsing alone (no validation) gives exactly that.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from graphql import GraphQLError, OperationDefinitionNode, parse


class Operation(NamedTuple):
    type: str  # "query", "mutation" or "subscription"
    name: str | None  # None for an anonymous operation


def selected_operation(query: str | None, operation_name: str | None) -> Operation | None:
    """The operation `operation_name` selects in `query` (the only one when no name is given),
    or None when the document does not parse or selects nothing; execution reports those."""
    if not query:
        return None
    return _selected(query, operation_name)


# Dashboards send the same few documents again and again; this keeps their parse.
@lru_cache(maxsize=1024)
def _selected(query: str, operation_name: str | None) -> Operation | None:
    try:
        document = parse(query, no_location=True)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        chosen = operations[0] if len(operations) == 1 else None
    else:
        chosen = next((o for o in operations if o.name and o.name.value == operation_name), None)
    if chosen is None:
        return None
    return Operation(chosen.operation.value, chosen.name.value if chosen.name else None)
