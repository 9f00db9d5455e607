"""Which operation a parsed document selects, read before anything executes.

The Lambda handler refuses subscriptions, the response cache keeps only queries, and the
metrics label requests by operation name; all need the selected operation of a document without
executing it, and whether or not the schema has the root type it names. Parsing alone (no
validation) gives exactly that; server/documents.py parses, within its caps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from graphql import DocumentNode, OperationDefinitionNode


class Operation(NamedTuple):
    type: str  # "query", "mutation" or "subscription"
    name: str | None  # None for an anonymous operation


# The operation a request's document selects, parsed within the caps (server/documents.py);
# None if it selects none, is refused or does not parse.
OperationOf = Callable[[str, str | None], "Operation | None"]


def select_operation(document: DocumentNode, operation_name: str | None) -> Operation | None:
    """The operation `operation_name` selects in `document` (the only one when no name is
    given), or None when it selects nothing; execution reports that."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        chosen = operations[0] if len(operations) == 1 else None
    else:
        chosen = next((o for o in operations if o.name and o.name.value == operation_name), None)
    if chosen is None:
        return None
    return Operation(chosen.operation.value, chosen.name.value if chosen.name else None)
