"""`job(id)` in one round trip, from the controller or, once it forgot the job, from accounting.

A snapshot whose scope recalls (a Cluster's `job(id)`, resolvers/scope.py) looks up each of its
ids with squeue as before (as the server's account), and gives it, as `Command.otherwise`, a
sacct run as the requester that the transport runs in the same round trip only if squeue printed
no row of the id. A live job costs what it did (one squeue, no sacct, no switch of user: a
runuser costs ~10 ms on a loaded head node, the whole of a squeue); a forgotten one costs one
round trip instead of two. sacct runs as the requester, so Slurm's PrivateData applies to it,
and is asked, as the history is, for the owner's jobs alone under visibility `own` (the scope's
users); the API's visibility filter applies to what it finds (Snapshot.seen_by).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from resolvers.history import CLOCK_SLACK, EARLIEST
from resolvers.scope import MAX_PUSHED_IDS, JobScope
from resolvers.slurm.errors import CommandFailed, SlurmError, SlurmErrorKind, check
from resolvers.slurm.history import HistoryQuery, HistoryRecord, history_command, parse_history
from resolvers.slurm.jobs import new_boundary
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
    """One id's command (squeue, otherwise sacct), and how to read its answer."""

    job_id: str
    command: Command
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
        sacct = history_command(query, boundary, user=scope.requester)
        return cls(job_id, replace(squeue, otherwise=sacct), boundary)

    def read(self, result: CommandResult) -> tuple[CommandResult, list[HistoryRecord] | None]:
        """squeue's result, and the jobs accounting knows by this id (None: sacct did not run).
        No accounting (no slurmdbd) is the same as not knowing, and so is a requester the
        transport will not act as (below the UID floor): what they may not read as themselves
        is a job they do not see, null as any other, never the whole cluster's failure. Nor is
        slurmdbd down (or any other failure of sacct): the id reads as not asked (None), and
        `Cluster.job` asks accounting again on its own, where the failure is that field's
        typed error (SLURM_UNAVAILABLE) and the rest of the query still answers."""
        squeue, sacct = replace(result, otherwise=None), result.otherwise
        if sacct is None:
            return squeue, None
        if sacct.refused:
            return squeue, []
        try:
            return squeue, parse_history(check(sacct).stdout, self.boundary)
        except SlurmError as exc:
            if exc.kind is SlurmErrorKind.ACCOUNTING_DISABLED:
                return squeue, []
            return squeue, None
        except CommandFailed:
            return squeue, None
