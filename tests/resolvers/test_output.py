"""has_started: output is read only once a run of the job has started (pure)."""

from __future__ import annotations

import pytest

from resolvers.output import has_started
from resolvers.slurm.jobs import JobRecord

NOW = 1_800_000_000


def record(state: str, start: str, nodes: str) -> JobRecord:
    """A job as squeue prints it, with the fields has_started reads."""
    empty = JobRecord(*[""] * len(JobRecord._fields))  # type: ignore[arg-type]  # job_id, below
    return empty._replace(
        display_id="7",
        job_id=7,
        user="alice",
        state=state,
        raw_start_time=start,
        raw_node_list=nodes,
        free_separator="\x1f",
    )


@pytest.mark.parametrize(
    ("state", "start", "nodes", "started"),
    [
        ("RUNNING", str(NOW - 5), "n1", True),
        ("COMPLETED", str(NOW - 60), "n[1-2]", True),
        ("FAILED", str(NOW - 60), "n1", True),  # a launch failure: it started, its file is read
        ("PENDING", "N/A", "", False),  # held
        ("PENDING", str(NOW + 3600), "", False),  # --begin: when Slurm expects it to start
        ("PENDING", str(NOW + 120), "", False),  # requeued, waiting for its next run
        ("REQUEUE_HOLD", str(NOW - 60), "", False),
        ("SPECIAL_EXIT", str(NOW - 60), "n1", False),
        ("CONFIGURING", str(NOW - 5), "n1", False),  # nodes booting: no script launched yet
        ("BOOT_FAIL", str(NOW - 5), "n1", False),
        ("CANCELLED", str(NOW - 60), "", False),  # cancelled while pending: start == end
        ("CANCELLED", str(NOW - 60), "n1", True),  # cancelled while running
        ("RUNNING", str(NOW + 30), "n1", False),  # a start after the snapshot saw it: not yet
    ],
)
def test_a_job_has_started_once_a_run_began(
    state: str, start: str, nodes: str, started: bool
) -> None:
    """Only a run under way or over counts: not waiting, not requeued, with nodes, started."""
    assert has_started(record(state, start, nodes), NOW) is started
