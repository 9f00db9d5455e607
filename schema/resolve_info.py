"""The one place the schema reaches behind strawberry's `Info`.

Fetch plans and subscription needs are computed from the query's own syntax tree (field nodes and
fragments), which strawberry keeps on graphql-core's `GraphQLResolveInfo` and exposes only as the
private `Info._raw_info` (its public `selected_fields` is a converted copy, without the fragments
map the planners walk). tests/server/test_filters.py fails the day a strawberry release moves it,
rather than a query failing in production.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLResolveInfo


def resolve_info(info: strawberry.Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's info behind strawberry's: the field nodes and fragments of the query."""
    raw: GraphQLResolveInfo[Any] = info._raw_info
    # strawberry hands over a look-alike tuple (with its operation context), not the class
    # itself: check for what the planners read, not for the type.
    if not (hasattr(raw, "field_nodes") and hasattr(raw, "fragments")):
        raise TypeError(f"strawberry's Info no longer carries graphql-core's info ({type(raw)})")
    return raw
