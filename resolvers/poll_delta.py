"""What changed between two polls, as the poll leader publishes it to the other replicas: pure,
no I/O (resolvers/shared_poll.py moves it, resolvers/shared_codec.py encodes it).

A follower that holds the publication a delta was made against (`base`) rebuilds the new poll
from it in time proportional to the change, not to the queue: the rows that differ replace its
own, the rows gone are dropped, and the job and node changes its subscribers hear are diffed
over those rows alone (a row that is not in the delta is the same row on both sides, so it can
make no change). Decoding the whole snapshot and diffing every row cost a follower ~50 ms of
its event loop per poll at 2,800 jobs, several times that on a loaded machine, before any
subscriber heard of the poll. A follower that does not hold `base` (it missed a publication,
joined late, or polled alone meanwhile) reads the whole snapshot published beside the delta
instead, and diffs it against what it last handed its subscribers, so no change is lost.

A job row "differs" when any of its text does, priority included, even where row_changed (what
subscribers hear) ignores it: the follower's rows stay the leader's. The free text is compared
split, as each squeue call separates it with a boundary of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from resolvers.events import JobChange, NodeChange, diff_jobs, diff_nodes
from resolvers.slurm.jobs import JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.slurm.partitions import PartitionRecord
from resolvers.snapshot import Need, Snapshot

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class PollDelta:
    """One poll as the rows that differ from publication `base` (0: from none, so a follower
    reads the whole snapshot). Partitions and the version are small: carried whole."""

    base: int
    taken_at: float
    needs: Need
    version: str | None
    partitions: tuple[PartitionRecord, ...] | None
    jobs: tuple[JobRow, ...]  # new, or differing from base's row
    jobs_gone: tuple[int, ...]
    nodes: tuple[NodeRecord, ...]
    nodes_gone: tuple[str, ...]


@dataclass(frozen=True)
class Touched:
    """The job ids and node names that differ between two polls."""

    jobs: tuple[int, ...] = ()
    nodes: tuple[str, ...] = ()


def row_differs(before: JobRow, after: JobRow) -> bool:
    if before.structured != after.structured:
        return True
    if before.free_separator == after.free_separator:
        return before.free_text != after.free_text
    return before.free_text.split(before.free_separator) != after.free_text.split(
        after.free_separator
    )


def touched(
    jobs_before: Mapping[int, JobRow] | None,
    jobs_after: Mapping[int, JobRow] | None,
    nodes_before: Mapping[str, NodeRecord] | None,
    nodes_after: Mapping[str, NodeRecord] | None,
) -> Touched:
    """What differs between two polls: all of a dataset the first lacks, none of one the
    second lacks (the delta holds none then)."""
    job_ids: list[int] = []
    if jobs_after is not None:
        jobs_before = jobs_before or {}
        for job_id, row in jobs_after.items():
            old = jobs_before.get(job_id)
            if old is None or row_differs(old, row):
                job_ids.append(job_id)
        job_ids.extend(job_id for job_id in jobs_before if job_id not in jobs_after)
    names: list[str] = []
    if nodes_after is not None:
        nodes_before = nodes_before or {}
        names = [n for n, node in nodes_after.items() if nodes_before.get(n) != node]
        names.extend(n for n in nodes_before if n not in nodes_after)
    return Touched(tuple(job_ids), tuple(names))


def job_changes(
    before: Mapping[int, JobRow], after: Mapping[int, JobRow], ids: Iterable[int]
) -> list[JobChange]:
    """diff_jobs(before, after), knowing that only the jobs `ids` may differ."""
    ids = tuple(ids)
    return diff_jobs(_only(before, ids), _only(after, ids))


def node_changes(
    before: Mapping[str, NodeRecord], after: Mapping[str, NodeRecord], names: Iterable[str]
) -> list[NodeChange]:
    names = tuple(names)
    return diff_nodes(_only(before, names), _only(after, names))


def _only(rows: Mapping[K, V], keys: tuple[K, ...]) -> dict[K, V]:
    return {key: rows[key] for key in keys if key in rows}


def make_delta(
    base: int,
    snapshot: Snapshot,
    jobs: Mapping[int, JobRow] | None,
    nodes: Mapping[str, NodeRecord] | None,
    differ: Touched,
) -> PollDelta:
    """`snapshot` (whose rows by key are `jobs` and `nodes`) as what `differ` says changed since
    publication `base`."""
    return PollDelta(
        base=base,
        taken_at=snapshot.taken_at,
        needs=snapshot.needs,
        version=snapshot.version,
        partitions=snapshot.partitions,
        jobs=tuple(jobs[i] for i in differ.jobs if i in jobs) if jobs is not None else (),
        jobs_gone=tuple(i for i in differ.jobs if i not in jobs) if jobs is not None else (),
        nodes=tuple(nodes[n] for n in differ.nodes if n in nodes) if nodes is not None else (),
        nodes_gone=tuple(n for n in differ.nodes if n not in nodes) if nodes is not None else (),
    )


@dataclass(frozen=True)
class Applied:
    """A poll rebuilt from a delta: its snapshot, its rows by key, and what differs."""

    snapshot: Snapshot
    jobs: dict[int, JobRow] | None
    nodes: dict[str, NodeRecord] | None
    differ: Touched


def apply_delta(
    cluster: str,
    jobs: Mapping[int, JobRow] | None,
    nodes: Mapping[str, NodeRecord] | None,
    delta: PollDelta,
) -> Applied:
    """The poll `delta` describes, from the rows of its base (`jobs`, `nodes`; a dataset the
    base lacks, the delta holds whole)."""
    new_jobs = new_nodes = None
    if Need.JOBS in delta.needs:
        new_jobs = dict(jobs or {})
        for job_id in delta.jobs_gone:
            new_jobs.pop(job_id, None)
        new_jobs.update((row.job_id, row) for row in delta.jobs)
    if Need.NODES in delta.needs:
        new_nodes = dict(nodes or {})
        for name in delta.nodes_gone:
            new_nodes.pop(name, None)
        new_nodes.update((node.name, node) for node in delta.nodes)
    snapshot = Snapshot(
        cluster=cluster,
        taken_at=delta.taken_at,
        needs=delta.needs,
        version=delta.version,
        partitions=delta.partitions,
        nodes=None if new_nodes is None else tuple(new_nodes.values()),
        jobs=None if new_jobs is None else tuple(new_jobs.values()),
    )
    differ = Touched(
        tuple(row.job_id for row in delta.jobs) + delta.jobs_gone,
        tuple(node.name for node in delta.nodes) + delta.nodes_gone,
    )
    return Applied(snapshot, new_jobs, new_nodes, differ)
