"""Statistics, pure: GRES counting as scontrol prints it, array tasks as squeue --array counts
them, and sinfo's split of CPUs into allocated, idle and other."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from resolvers.selection import filter_jobs
from resolvers.slurm.nodes import parse_nodes, split_gres
from resolvers.stats import Usage, array_tasks, compute_stats, gres_count, stats_by_partition
from tests.security.test_visibility import golden_rows

NODES = Path(__file__).resolve().parent.parent / "golden" / "22.05" / "nodes" / "scenario.stdout"


@pytest.mark.parametrize(
    ("display_id", "tasks"),
    [("42", 1), ("42_3", 1), ("42+1", 1), ("42_[3-6%2]", 4), ("42_[1,5-6]", 3),
     ("42_[1-7:2]", 4), ("42_[x]", 1)],
)  # fmt: skip
def test_array_tasks(display_id: str, tasks: int) -> None:
    """A pending rest stands for its tasks; anything else is one job."""
    assert array_tasks(display_id) == tasks


def test_gres_items_are_split_and_counted() -> None:
    """Typed and untyped GPUs, socket and index lists with commas, other GRES ignored."""
    used = split_gres("gpu:a100:1(IDX:0),gpu:v100:2(IDX:1,3),shard:2(2/8,0/8)")
    assert used == ("gpu:a100:1(IDX:0)", "gpu:v100:2(IDX:1,3)", "shard:2(2/8,0/8)")
    assert gres_count(used) == 3
    assert gres_count(("gpu:4(S:0-1)", "gpu", "gpus:9", "mps:100")) == 5
    assert gres_count(split_gres("(null)")) == 0
    assert gres_count(("gpu:a100:0(IDX:N/A)",)) == 0


def test_figures_of_the_golden_cluster() -> None:
    """The captured nodes and jobs: CPUs and memory add up, a drained node's free CPUs are
    `unavailable`, and pending tasks count one by one."""
    nodes = parse_nodes(NODES.read_text())
    jobs = [(row.display_id, row.fields()) for row in golden_rows()]
    stats = compute_stats(nodes, jobs)
    assert stats.cpus.total == sum(n.cpus for n in nodes)
    assert stats.cpus.allocated == sum(n.cpus_allocated for n in nodes)
    assert stats.cpus.idle + stats.cpus.unavailable == stats.cpus.total - stats.cpus.allocated
    assert stats.memory_mb.total == sum(n.real_memory_mb for n in nodes)
    assert sum(c for _, c in stats.nodes_by_state) == len(nodes)
    pending = [(d, j) for d, j in jobs if j.state == "PENDING"]
    assert stats.pending_jobs == sum(array_tasks(d) for d, _ in pending) > len(pending) - 1
    assert stats.pending_cpus == sum(array_tasks(d) * j.num_cpus for d, j in pending)
    assert sum(c for _, c in stats.jobs_by_state) == sum(c for _, c in stats.jobs_by_user)
    # Captured with LOCAL_CLUSTER_GPUS=2 and a job holding one GPU (scontrol --details).
    assert (stats.gpus.total, stats.gpus.allocated) == (2, 1)

    drained = [
        dataclasses.replace(n, state_flags=("DRAIN",), gres=("gpu:a100:4(S:0-1)",),
                            gres_used=("gpu:a100:1(IDX:0)",))
        for n in nodes[:1]
    ]  # fmt: skip
    figures = compute_stats(drained, [])
    node = nodes[0]
    free = node.cpus - node.cpus_allocated
    assert figures.cpus == Usage(node.cpus, node.cpus_allocated, 0, free)
    assert figures.gpus == Usage(4, 1, 0, 3)
    assert figures.jobs_by_state == () and figures.pending_jobs == 0


def test_one_pass_figures_equal_each_partitions_own() -> None:
    """stats_by_partition's figures, made in one pass over the jobs, are compute_stats' of the
    cluster and of each partition's nodes and jobs."""
    nodes = parse_nodes(NODES.read_text())
    rows = golden_rows()
    members = {"debug": ("n1", "n2"), "batch": ("n1", "n2", "n3", "n4"), "empty": ()}
    found = stats_by_partition(nodes, members, ((r.display_id, r.fields()) for r in rows))
    assert found[None] == compute_stats(nodes, [(r.display_id, r.fields()) for r in rows])
    for partition, names in members.items():
        mine = filter_jobs(rows, partitions={partition})
        expected = compute_stats(
            [n for n in nodes if n.name in names], [(r.display_id, r.fields()) for r in mine]
        )
        assert found[partition] == expected, partition


def test_stats_plan_nodes_and_the_jobs_they_count() -> None:
    """Cluster.stats reads nodes and every job; a named partition's stats its jobs alone."""
    from resolvers.scope import EVERY_JOB, JobScope
    from resolvers.snapshot import Need
    from tests.resolvers.test_scope import plan

    found = plan("{ cluster { stats { pendingJobs } } }")
    assert found.needs_of("local") == Need.NODES | Need.JOBS
    assert found.scope_of("local") == EVERY_JOB
    found = plan('{ cluster { partition(name: "batch") { stats { pendingJobs } } } }')
    assert found.needs_of("local") == Need.NODES | Need.JOBS | Need.PARTITIONS
    assert found.scope_of("local") == JobScope(partitions=frozenset({"batch"}))
