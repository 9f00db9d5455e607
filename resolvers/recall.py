"""`job(id)` in one round trip, from the controller or, once it forgot the job, from accounting.

A snapshot whose scope recalls (a Cluster's `job(id)`, resolvers/scope.py) looks up each of its
ids with one command run as the requester: squeue, and sacct only if squeue held no row of the
id (resolvers/slurm/recall.py). A live job costs what it did (one squeue, no sacct); a forgotten
one costs one round trip instead of two. Both halves run as the requester, so Slurm's own
PrivateData applies to each (under PrivateData=jobs a lookup shows no more than the user's own
squeue and sacct do); sacct is asked, as the history is, for the owner's jobs alone under
visibility `own` (the scope's users), and the API's visibility filter applies to what it finds
(Snapshot.seen_by).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from resolvers.history import CLOCK_SLACK, EARLIEST
from resolvers.scope import MAX_PUSHED_IDS, JobScope
from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from resolvers.slurm.history import HistoryQuery, HistoryRecord, history_command, parse_history
from resolvers.slurm.jobs import new_boundary
from resolvers.slurm.recall import recall_command, split_recall
from transport.base import Command, CommandResult


def recalls(scope: JobScope, squeues: list[Command]) -> bool:
    """Whether the squeues of `scope` become recalling lookups: only for one id per squeue
    (up to MAX_PUSHED_IDS ids: squeue then fails or prints nothing for a forgotten one) and
    with a requester to run sacct as."""
    ids = scope.ids
    return (
        scope.recall
        and scope.requester is not None
        and ids is not None
        and len(ids) <= MAX_PUSHED_IDS
        and len(squeues) == len(ids)
    )


@dataclass(frozen=True)
class RecallLookup:
    """One id's command, and how to read its answer."""

    job_id: str
    command: Command
    squeue: Command
    sacct: Command
    mark: str
    boundary: str

    @classmethod
    def of(cls, squeue: Command, scope: JobScope) -> RecallLookup:
        """The lookup of the one id `squeue` asks for, sacct as `scope` says."""
        assert scope.requester is not None
        [job_id] = [arg.removeprefix("--jobs=") for arg in squeue.argv if arg.startswith("--jobs=")]
        query = HistoryQuery(
            EARLIEST,
            int(time.time()) + CLOCK_SLACK,
            job_ids=(job_id,),
            users=tuple(sorted(scope.users or ())),
        )
        boundary = new_boundary()
        sacct = history_command(query, boundary)
        mark = new_boundary()
        command = recall_command(mark, squeue, sacct, scope.requester)
        return cls(job_id, command, squeue, sacct, mark, boundary)

    def read(self, result: CommandResult) -> tuple[CommandResult, list[HistoryRecord] | None]:
        """squeue's result, and the jobs accounting knows by this id (None: sacct did not run).
        No accounting (no slurmdbd) is the same as not knowing; slurmdbd down is an error."""
        recalled = split_recall(result, self.mark, self.squeue, self.sacct)
        if recalled.sacct is None:
            return recalled.squeue, None
        try:
            return recalled.squeue, parse_history(check(recalled.sacct).stdout, self.boundary)
        except SlurmError as exc:
            if exc.kind is SlurmErrorKind.ACCOUNTING_DISABLED:
                return recalled.squeue, []
            raise
