"""The Node interface of the Relay spec: every object with identity has an opaque global id."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    name="Node",
    description="An object with a global id, which `Query.node(id:)` fetches again. Ids are "
    "opaque and name the cluster too: two clusters' job 42 are two objects.",
)
class Node:
    @strawberry.field(description="Opaque, cluster-qualified; stable while the object exists.")
    def id(self) -> strawberry.ID:
        raise NotImplementedError  # every implementing type has its own
