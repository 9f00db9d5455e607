"""Which jobs a query can read, as squeue options: what a fetch plan pushes down to Slurm.

A query that reads one job, lists jobs by user, state or partition, or reads one node's jobs,
need not download the whole queue. Its `JobScope` says what squeue must return for every job
access in the query to be answered exactly as from the full queue: a superset of what each
access selects, which the
resolvers still filter as they always do. Anything the API cannot express to squeue exactly
(a name filter, a node's jobs, an id form squeue reads differently) widens the scope to every
job. Pure: no I/O; values reach argv only after the checks here (never a shell string).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from resolvers.selection import JobCriteria
from resolvers.visibility import Visibility

# squeue --states accepts these (22.05 and 24.11 list the same); the API's UNKNOWN is ours alone.
SQUEUE_STATES = frozenset(
    {
        "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT",
        "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "COMPLETING",
        "CONFIGURING", "RESIZING", "RESV_DEL_HOLD", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
        "REVOKED", "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "STOPPED",
    }
)  # fmt: skip
# Names squeue takes in a comma-separated list and matches literally; anything else (a comma
# would split the list) is filtered by the resolvers alone.
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
_PARTITION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
# A node name squeue --nodelist reads as that one node (no hostlist brackets, no commas).
_NODE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
# Up to this many job ids, one squeue each, in the same batch: squeue given exactly one id asks
# slurmctld for that job alone (slurm_load_job), and fails if it is unknown.
MAX_PUSHED_IDS = 20
# Up to this many, one squeue listing them all: squeue given several ids loads the whole queue
# from slurmctld and keeps those jobs itself (src/squeue/opts.c and squeue.c, 22.05 and 24.11),
# leaving out unknown ones without an error; only those jobs' rows reach the API. More: the
# whole queue.
MAX_LISTED_IDS = 1000


@dataclass(frozen=True)
class JobScope:
    """Jobs squeue is asked for: every criterion given must hold; None means no restriction.
    Hashable: a partial snapshot is cached and coalesced under its scope."""

    ids: frozenset[str] | None = None  # numeric ids, as squeue --jobs reads them
    users: frozenset[str] | None = None
    states: frozenset[str] | None = None
    partitions: frozenset[str] | None = None
    # Jobs allocated on these nodes (squeue --nodelist): what one node's `jobs` reads.
    nodes: frozenset[str] | None = None
    # `job(id)` answers from accounting once the controller has forgotten the job: each id
    # squeue no longer holds is asked of sacct in the same command (resolvers/slurm/recall.py),
    # as `requester` (set per request: such a snapshot is cached and coalesced per user, since
    # sacct answers as that user's Slurm lets them see). Without a requester, no sacct runs.
    recall: bool = False
    requester: str | None = None
    # Whether the rows must carry squeue's output patterns (STDOUT/STDERR). A lookup by id whose
    # query reads no output path or pattern may be answered by an scontrol session instead,
    # which prints expanded paths (resolvers/slurm/job_lookup.py); such rows never serve a
    # query that reads them.
    paths: bool = True

    @property
    def everything(self) -> bool:
        return self == EVERY_JOB

    def covers(self, other: JobScope) -> bool:
        """Every job `other` selects is one this scope selects (and, if `other` recalls
        forgotten jobs, this one recalls them for the same requester)."""
        if other.recall and (not self.recall or self.requester != other.requester):
            return False
        if other.paths and not self.paths:
            return False
        return all(
            mine is None or (theirs is not None and theirs <= mine)
            for mine, theirs in (
                (self.ids, other.ids),
                (self.users, other.users),
                (self.states, other.states),
                (self.partitions, other.partitions),
                (self.nodes, other.nodes),
            )
        )

    def merged(self, other: JobScope) -> JobScope:
        """A scope covering both: ids lists join; any other difference reads every job."""
        if self.covers(other):
            return self
        if other.covers(self):
            return other
        if (
            self.ids is not None
            and other.ids is not None
            and (
                (self.users, self.states, self.partitions, self.nodes, self.requester)
                == (other.users, other.states, other.partitions, other.nodes, other.requester)
            )
        ):
            joined = dataclasses.replace(
                self,
                ids=self.ids | other.ids,
                recall=self.recall or other.recall,
                paths=self.paths or other.paths,
            )
            return joined if len(joined.ids or ()) <= MAX_LISTED_IDS else EVERY_JOB
        return EVERY_JOB

    def in_partition(self, partition: str) -> JobScope:
        """This scope within one partition (a Partition's own job listing narrows its filter
        to it, schema/filters.py), when squeue reads the name literally."""
        if not _PARTITION.match(partition):
            return self
        return dataclasses.replace(self, partitions=frozenset({partition}))

    def on_node(self, node: str) -> JobScope:
        """This scope on one node (a ComputeNode's `jobs`), when squeue reads the name as
        that node alone (not `localhost`, which squeue maps to the host it runs on); an
        unknown node is an empty answer (resolvers/snapshot.py)."""
        if not _NODE.match(node) or node == "localhost":
            return self
        return dataclasses.replace(self, nodes=frozenset({node}))

    def seen_by(self, audience: Visibility) -> JobScope:
        """This scope narrowed to what `audience` may see. Under `own` every job access of a
        request reads only the owner's jobs, so squeue is asked for those alone: a users filter
        naming someone else then finds nothing, never more (the views filter again anyway)."""
        if audience.everyone or audience.owner is None or not _USER.match(audience.owner):
            return self
        return dataclasses.replace(self, users=frozenset({audience.owner}))

    def without_paths(self) -> JobScope:
        """This lookup by id for a query that reads no output path or pattern."""
        return dataclasses.replace(self, paths=False) if self.ids is not None else self

    def asked_by(self, user: str) -> JobScope:
        """This scope for one requester: the one sacct runs as if it recalls forgotten jobs."""
        return dataclasses.replace(self, requester=user) if self.recall else self


EVERY_JOB = JobScope()


def scope_of_job(job_id: str, *, recall: bool = False) -> JobScope:
    """What `job(id)` reads (`recall`: Cluster.job, which answers from accounting too). An
    array task (`42_3`, `42_[4-9]`) or a het component (`42+1`) is asked for by its array or
    het job id: squeue invents a row for `42_3` while the task is still in the pending
    remainder `42_[3-9]`, which the full queue does not hold."""
    return JobScope(ids=frozenset({squeue_id(job_id)}), recall=recall)


def scope_of_listing(criteria: JobCriteria) -> JobScope:
    """What `jobs(filter:)` reads; `names` are never pushed (squeue's --name is exact too, but
    free text may hold commas)."""
    ids = None
    if criteria.ids is not None:
        ids = frozenset(squeue_id(job_id) for job_id in criteria.ids)
        if len(ids) > MAX_LISTED_IDS:
            ids = None
    return JobScope(
        ids=ids,
        users=_pushable(criteria.users, _USER.match),
        states=criteria.states if criteria.states and criteria.states <= SQUEUE_STATES else None,
        partitions=_pushable(criteria.partitions, _PARTITION.match),
    )


def squeue_id(job_id: str) -> str:
    """The leading number of a validated job id (resolvers/ids.py): digits only."""
    match = re.match(r"[0-9]+", job_id)
    if match is None:
        raise ValueError(f"{job_id!r} was not validated as a job id")
    return match.group()


def _pushable(
    values: frozenset[str] | None, valid: Callable[[str], object]
) -> frozenset[str] | None:
    if not values:
        return None  # an empty list selects nothing; squeue would read it as no restriction
    return values if all(valid(v) for v in values) else None


def merge_all(scopes: Iterable[JobScope]) -> JobScope | None:
    """One scope covering all of `scopes`; None if there are none (no job is read)."""
    merged: JobScope | None = None
    for scope in scopes:
        merged = scope if merged is None else merged.merged(scope)
    return merged
