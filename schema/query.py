"""The root Query: clusters, one cluster by name, and any object by its global id."""

from __future__ import annotations

import asyncio
import time

import strawberry

from resolvers import accounts as accounting
from resolvers.context import RequestContext
from resolvers.global_ids import GlobalId, Kind, read_global_id, read_global_ids
from resolvers.history import forgotten_job
from resolvers.snapshot import Snapshot
from schema.accounts import Association
from schema.cluster import Cluster
from schema.errors import expected_errors_as_graphql, expected_errors_raised_as_graphql
from schema.history import JobStep
from schema.identification import Node
from schema.job import Job
from schema.node import ComputeNode
from schema.partition import Partition
from schema.resolve_info import resolve_info


async def _load(context: RequestContext, name: str, info: strawberry.Info) -> Cluster:
    snapshot = await context.snapshot(name, resolve_info(info))
    return Cluster(name=name, _snapshot=snapshot)


async def _find(context: RequestContext, found: GlobalId, info: strawberry.Info) -> Node | None:
    """The object `found` names, as this request may see it; None if there is none. A cluster
    that is not configured holds nothing (never another cluster's object), and a job the
    request may not see is not in its view of the snapshot: null either way, as for a job that
    does not exist."""
    if found.cluster not in context.sources:
        return None
    if found.kind is Kind.CLUSTER:
        return await _load(context, found.cluster, info)
    if found.kind is Kind.JOB_STEP:
        return await _step(context, found)
    snapshot = await context.snapshot(found.cluster, resolve_info(info))
    return _lookup(snapshot, found)


async def _find_any(
    context: RequestContext, found: GlobalId | None, info: strawberry.Info
) -> Node | None:
    return None if found is None else await _find(context, found, info)


async def _step(context: RequestContext, found: GlobalId) -> JobStep | None:
    """A step from accounting: one sacct of its job as the caller, within the caller's
    visibility (another user's job under `own` is null, and sacct is asked for the caller's
    jobs only), like `job(id:)` for a job the controller forgot."""
    context.cacheable = False  # accounting is not in the snapshot the response cache follows
    job_id, _, step_id = found.key.partition(".")
    source = context.sources[found.cluster]
    record = await forgotten_job(
        source.transport, context.identity.user, context.visibility, job_id, int(time.time())
    )
    if record is None or str(record.job_id) != job_id:
        return None
    for step in record.steps:
        if step.step_id == step_id:
            return JobStep(_step=step, _cluster=found.cluster, _job_id=record.job_id)
    return None


def _lookup(snapshot: Snapshot, found: GlobalId) -> Node | None:
    if found.kind is Kind.PARTITION:
        partition = snapshot.partitions_by_name.get(found.key)
        return None if partition is None else Partition.from_record(partition, snapshot)
    if found.kind is Kind.COMPUTE_NODE:
        node = snapshot.nodes_by_name.get(found.key)
        return None if node is None else ComputeNode.from_record(node, snapshot)
    # A job by its unique id only, never the first task of an array of that number (which
    # would be another object, with another global id).
    for position in snapshot.jobs_by_id.get(found.key, ()):
        row = snapshot.jobs_sorted[position]
        if str(row.job_id) == found.key:
            return Job.from_row(row, snapshot)
    return None


@strawberry.type(description="Who the request acts as.")
class Viewer:
    user: str = strawberry.field(
        description="The Unix user; for an anonymous request, the unprivileged account it reads "
        "as (SLURM_GRAPHQL_ANONYMOUS_USER)."
    )
    admin: bool

    @strawberry.field(
        description="Where the caller may submit on a cluster (the default one without `cluster`)"
        ": account, partition, QOS and limits, with their fair-share (sacctmgr and sshare, run "
        "as the caller, in one round trip)."
    )
    async def associations(
        self, info: strawberry.Info, cluster: str | None = None
    ) -> list[Association]:
        context: RequestContext = info.context
        context.cacheable = False

        async def load() -> list[Association]:
            source = context.sources[context.resolve_cluster_name(cluster)]
            found = await accounting.associations(source.transport, context.identity.user)
            return [Association.of(a) for a in found]

        return await expected_errors_as_graphql(load())

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

    @strawberry.field(
        description="Any object by its global id (Relay's refetch); null when it does not "
        "exist, the caller may not see it, or the id is not one the API made (forged, "
        "tampered): nothing is run for those."
    )
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        found = read_global_id(id)
        if found is None:
            return None
        return await expected_errors_as_graphql(_find(info.context, found, info))

    @strawberry.field(
        description="Objects by global id, in order, null for each one `node` would give null; "
        "at most 100 ids. One snapshot per cluster serves them all."
    )
    async def nodes(self, info: strawberry.Info, ids: list[strawberry.ID]) -> list[Node | None]:
        with expected_errors_raised_as_graphql():
            found = read_global_ids(list(ids))
        context: RequestContext = info.context
        loads = asyncio.gather(*(_find_any(context, one, info) for one in found))
        return await expected_errors_as_graphql(loads)
