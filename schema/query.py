"""The root Query: clusters, and one cluster by name."""

from __future__ import annotations

import asyncio

import strawberry

from resolvers.context import RequestContext
from schema.cluster import Cluster
from schema.errors import expected_errors_as_graphql
from schema.resolve_info import resolve_info


async def _load(context: RequestContext, name: str, info: strawberry.Info) -> Cluster:
    snapshot = await context.snapshot(name, resolve_info(info))
    return Cluster(name=name, _snapshot=snapshot)


@strawberry.type(description="Who the request acts as.")
class Viewer:
    user: str = strawberry.field(
        description="The Unix user; for an anonymous request, the unprivileged account it reads "
        "as (SLURM_GRAPHQL_ANONYMOUS_USER)."
    )
    admin: bool
    authenticated: bool = strawberry.field(
        description="False for an anonymous request, which may only read: mutations and job "
        "output need an authenticated identity."
    )


@strawberry.type
class Query:
    @strawberry.field(description="The caller, as the API sees it (no command runs).")
    def viewer(self, info: strawberry.Info) -> Viewer:
        identity = info.context.identity
        return Viewer(
            user=identity.user, admin=identity.admin, authenticated=identity.authenticated
        )

    @strawberry.field(description="Every configured cluster, the default one first.")
    async def clusters(self, info: strawberry.Info) -> list[Cluster]:
        context: RequestContext = info.context
        loads = asyncio.gather(*(_load(context, name, info) for name in context.cluster_names))
        return await expected_errors_as_graphql(loads)

    @strawberry.field(description="A cluster by name; the default cluster when name is omitted.")
    async def cluster(self, info: strawberry.Info, name: str | None = None) -> Cluster | None:
        context: RequestContext = info.context

        async def load() -> Cluster:
            return await _load(context, context.resolve_cluster_name(name), info)

        return await expected_errors_as_graphql(load())
