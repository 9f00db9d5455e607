"""Per-request state: the clusters a request may use and the snapshots it has fetched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLResolveInfo

from resolvers.identity import Identity, Unauthenticated
from resolvers.output import OutputForbidden, OutputReader
from resolvers.plan import Plan, plan_operation
from resolvers.snapshot import Snapshot
from resolvers.source import SnapshotSource
from resolvers.visibility import Visibility
from slurm_graphql.errors import SlurmGraphQLError
from transport.base import USER_NAME


class ClusterNotFound(SlurmGraphQLError, LookupError):
    """No cluster of that name is configured."""


@dataclass(frozen=True)
class RequestIds:
    """Who to blame in the logs: the server's id of the request (or WebSocket operation), and
    apart, the id the caller sent, which is theirs and proves nothing."""

    request_id: str = ""
    client_request_id: str | None = None


@dataclass
class RequestContext:
    sources: Mapping[str, SnapshotSource]  # in configuration order: the first is the default
    max_page_size: int
    identity: Identity  # never the server's own account: an authenticated user, or anonymous
    aws_cli: str = "aws"  # the head node's AWS CLI, for scripts submitted from S3
    # The ids of the request or operation being served, asked each time: strawberry gives every
    # operation on a WebSocket the connection's one context, so they cannot be stored in it.
    ids: Callable[[], RequestIds] = RequestIds
    own_jobs_only: bool = False  # SLURM_GRAPHQL_JOB_VISIBILITY=own, for users but not admins
    admins_read_output: bool = False
    max_history_days: int = 31  # SLURM_GRAPHQL_MAX_HISTORY_DAYS: the widest jobHistory window
    jobs_listed: int = 0  # jobs put in connections, to size what the response cache keeps
    cacheable: bool = True  # False once the answer holds something the snapshot does not
    _plan: Plan | None = None
    _snapshots: dict[str, asyncio.Future[Snapshot]] = field(default_factory=dict)
    _readers: dict[tuple[str, str], OutputReader] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        """The server's id of the request or WebSocket operation, for the audit trail."""
        return self.ids().request_id

    @property
    def client_request_id(self) -> str | None:
        return self.ids().client_request_id

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def resolve_cluster_name(self, name: str | None) -> str:
        if name is None:
            return self.cluster_names[0]
        if name not in self.sources:
            raise ClusterNotFound(name)
        return name

    def plan(self, info: GraphQLResolveInfo[Any]) -> Plan:
        """The whole operation's needs, computed (and its input validated) once per request."""
        if self._plan is None:
            self._plan = plan_operation(
                info.operation,
                info.fragments,
                _coerced(info.variable_values),
                self.cluster_names,
                self.max_page_size,
            )
        return self._plan

    async def snapshot(self, cluster: str, info: GraphQLResolveInfo[Any]) -> Snapshot:
        """This request's one snapshot of `cluster`, covering every field of the operation."""
        plan = self.plan(info)
        task = self._snapshots.get(cluster)
        if task is None:
            scope = plan.scope_of(cluster).seen_by(self.visibility).asked_by(self.identity.user)
            task = asyncio.ensure_future(self.sources[cluster].get(plan.needs_of(cluster), scope))
            self._snapshots[cluster] = task
        return self.visible(await asyncio.shield(task))

    def adopt(self, snapshot: Snapshot) -> None:
        """Use `snapshot`, fetched for this request before it ran (to learn the cluster's size
        for its cost), as its snapshot of that cluster, rather than fetching another."""
        if snapshot.cluster not in self._snapshots:
            future = asyncio.get_running_loop().create_future()
            future.set_result(snapshot)
            self._snapshots[snapshot.cluster] = future

    @property
    def visibility(self) -> Visibility:
        """What this request may see; derived on each use, since a WebSocket's identity is set
        after its context is made (connection_init)."""
        return Visibility.of(self.identity, self.own_jobs_only)

    def visible(self, snapshot: Snapshot) -> Snapshot:
        """`snapshot` as this request may see it."""
        return snapshot.seen_by(self.visibility)

    def may_read_output_of(self, owner: str) -> bool:
        """Output is its owner's; administrators may read it too when configured."""
        identity = self.identity
        if identity.user == owner:
            return identity.authenticated
        return identity.admin and self.admins_read_output

    def output_reader(self, cluster: str, owner: str) -> OutputReader:
        """This request's reader of `owner`'s output files on `cluster`. Files are always read
        as their owner, never with the server's rights: the owner's own request or an
        administrator allowed to read every user's output read what the owner could. Raises
        Unauthenticated for an anonymous request (output is read on someone's behalf, who must
        have proved who they are), OutputForbidden when the API itself says no."""
        if not self.identity.authenticated:
            raise Unauthenticated("reading job output needs an authenticated identity")
        if not self.may_read_output_of(owner) or not USER_NAME.match(owner):
            raise OutputForbidden("only the job's owner may read its output")
        reader = self._readers.get((cluster, owner))
        if reader is None:
            reader = OutputReader(self.sources[cluster].transport, owner)
            self._readers[(cluster, owner)] = reader
        self.cacheable = False  # files change without the snapshot changing
        return reader

    def snapshots_used(self) -> tuple[Snapshot, ...]:
        """The snapshots this request read, once it has finished."""
        return tuple(
            task.result()
            for task in self._snapshots.values()
            if task.done() and not task.cancelled() and task.exception() is None
        )


def _coerced(variable_values: Any) -> dict[str, Any]:
    """graphql-core 3.3 wraps coerced variables in VariableValues; 3.2 passed a plain dict."""
    return dict(getattr(variable_values, "coerced", variable_values))
