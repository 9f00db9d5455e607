"""Dashboard figures from one snapshot: jobs by state and user, pending pressure, and CPUs,
memory and GPUs total / allocated / idle, counted as `sinfo` and `squeue` count them.

An array's pending rest (`42_[3-6%2]`, one squeue row, also once cancelled) counts as the tasks
it holds, as `squeue --array` lists them: a dashboard's pending pressure is tasks waiting, not
rows. CPUs follow `sinfo --format=%C`: a node that is down, drained or failed has its
unallocated CPUs `unavailable` (sinfo's "other"), not idle; memory and GPUs are split the same
way.

Pure: the caller passes the records it may see (resolvers/visibility.py has already narrowed
the jobs to the request's view), so counts tell nothing a listing would not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from resolvers.selection import job_partitions, node_state
from resolvers.slurm.jobs import JobRecord
from resolvers.slurm.nodes import NodeRecord

# A node in one of these states offers nothing new to the scheduler (sinfo's "other").
UNAVAILABLE_STATES = frozenset({"DOWN", "DRAINED", "DRAINING", "FAIL", "FAILING"})
_TASKS = re.compile(r"_\[([^\]]*)\]\Z")
_GRES_ITEM = re.compile(r"^([^:()]+)(?::([^:()]*))?(?::(\d+))?(?:\(.*)?\Z")


@dataclass(frozen=True)
class Usage:
    total: int
    allocated: int
    idle: int
    unavailable: int  # on down, drained or failed nodes, not allocated


@dataclass(frozen=True)
class Stats:
    jobs_by_state: tuple[tuple[str, int], ...]  # Slurm's state names, largest count first
    jobs_by_user: tuple[tuple[str, int], ...]
    pending_jobs: int
    pending_cpus: int
    cpus: Usage
    memory_mb: Usage
    gpus: Usage
    nodes_by_state: tuple[tuple[str, int], ...]  # sinfo's names (resolvers/selection.py)


def array_tasks(display_id: str) -> int:
    """How many tasks a row stands for: 4 for `42_[3-6%2]`, 3 for `42_[1,5-6]`, else 1."""
    match = _TASKS.search(display_id)
    if match is None:
        return 1
    count = 0
    for part in match.group(1).split("%", 1)[0].split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            return 1  # not a form Slurm prints: one row, one job
        stride = int(step) if step.isdigit() and int(step) > 0 else 1
        count += (int(last) - int(first)) // stride + 1 if last else 1
    return max(count, 1)


def gres_count(items: Iterable[str], name: str = "gpu") -> int:
    """The number of `name` GRES in scontrol's Gres or GresUsed items: `gpu:2`,
    `gpu:a100:2(S:0-1)`, `gpu:a100:1(IDX:0)`; a bare `gpu` is one."""
    total = 0
    for item in items:
        match = _GRES_ITEM.match(item.strip())
        if match is None or match.group(1) != name:
            continue
        count = match.group(3)
        if count is None and match.group(2) is not None and match.group(2).isdigit():
            count = match.group(2)  # gpu:2, no type
        total += int(count) if count is not None else 1
    return total


def _usage(pairs: Iterable[tuple[int, int, bool]]) -> Usage:
    total = allocated = idle = unavailable = 0
    for node_total, node_allocated, available in pairs:
        node_allocated = min(node_allocated, node_total)
        total += node_total
        allocated += node_allocated
        if available:
            idle += node_total - node_allocated
        else:
            unavailable += node_total - node_allocated
    return Usage(total, allocated, idle, unavailable)


@dataclass
class _JobCounts:
    by_state: Counter[str] = field(default_factory=Counter)
    by_user: Counter[str] = field(default_factory=Counter)
    pending_jobs: int = 0
    pending_cpus: int = 0

    def add(self, job: JobRecord, tasks: int) -> None:
        self.by_state[job.state] += tasks
        self.by_user[job.user] += tasks
        if job.state == "PENDING":
            self.pending_jobs += tasks
            self.pending_cpus += tasks * job.num_cpus


def compute_stats(nodes: Iterable[NodeRecord], jobs: Iterable[tuple[str, JobRecord]]) -> Stats:
    """Figures of `nodes` and `jobs` (display id, record) as sinfo and squeue --array count."""
    counts = _JobCounts()
    for display_id, job in jobs:
        counts.add(job, array_tasks(display_id))  # a remainder cancelled before it ran, too
    return _figures(tuple(nodes), counts)


def stats_by_partition(
    nodes: Iterable[NodeRecord],
    nodes_of_partition: Mapping[str, Iterable[str]],
    jobs: Iterable[tuple[str, JobRecord]],
) -> dict[str | None, Stats]:
    """compute_stats of the whole cluster (key None) and of each partition (its nodes, and the
    jobs naming it: a pending job naming two partitions counts in both), in one pass over the
    jobs: a dashboard showing every partition reads each job once, not once per partition."""
    nodes = tuple(nodes)
    counts: dict[str | None, _JobCounts] = {None: _JobCounts()}
    counts.update((name, _JobCounts()) for name in nodes_of_partition)
    everything = counts[None]
    for display_id, job in jobs:
        tasks = array_tasks(display_id)
        everything.add(job, tasks)
        for partition in set(job_partitions(job)):
            found = counts.get(partition)
            if found is not None:
                found.add(job, tasks)
    by_name = {node.name: node for node in nodes}
    figures: dict[str | None, Stats] = {None: _figures(nodes, everything)}
    for partition, names in nodes_of_partition.items():
        members = tuple(by_name[n] for n in names if n in by_name)
        figures[partition] = _figures(members, counts[partition])
    return figures


def _figures(nodes: tuple[NodeRecord, ...], counts: _JobCounts) -> Stats:
    available = [node_state(node) not in UNAVAILABLE_STATES for node in nodes]
    gpus = [(gres_count(n.gres), gres_count(n.gres_used)) for n in nodes]
    return Stats(
        jobs_by_state=_ranked(counts.by_state),
        jobs_by_user=_ranked(counts.by_user),
        pending_jobs=counts.pending_jobs,
        pending_cpus=counts.pending_cpus,
        cpus=_usage((n.cpus, n.cpus_allocated, ok) for n, ok in zip(nodes, available, strict=True)),
        memory_mb=_usage(
            (n.real_memory_mb, n.allocated_memory_mb, ok)
            for n, ok in zip(nodes, available, strict=True)
        ),
        gpus=_usage((t, u, ok) for (t, u), ok in zip(gpus, available, strict=True)),
        nodes_by_state=_ranked(Counter(node_state(node) for node in nodes)),
    )


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    """Largest count first, then by name: a stable order for dashboards and caches."""
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
