"""The job-action builders: one argv element per value, `--` before the id, bad values refused."""

from __future__ import annotations

import pytest

from resolvers.slurm.control import (
    cancel_argv,
    hold_argv,
    release_argv,
    requeue_argv,
    update_argv,
)
from resolvers.slurm.job_fields import InvalidSubmission
from resolvers.slurm.job_update import JobUpdate


def test_cancel_ends_options_before_the_id() -> None:
    """scancel -- ID, and with a signal --signal=NAME -- ID."""
    assert cancel_argv("42") == ["scancel", "--", "42"]
    assert cancel_argv("42_3", "USR1") == ["scancel", "--signal=USR1", "--", "42_3"]


@pytest.mark.parametrize("signal", ["KILL; id", "--full", "", "USR1 USR2", "99999"])
def test_cancel_refuses_a_signal_slurm_would_not_take(signal: str) -> None:
    """A signal is a name or number, never extra options or text."""
    with pytest.raises(InvalidSubmission):
        cancel_argv("42", signal)


def test_hold_release_and_requeue() -> None:
    """hold, release, requeue and requeuehold, the id as its own element."""
    assert hold_argv("7") == ["scontrol", "hold", "7"]
    assert release_argv("7") == ["scontrol", "release", "7"]
    assert requeue_argv("7") == ["scontrol", "requeue", "7"]
    assert requeue_argv("7", hold=True) == ["scontrol", "requeuehold", "7"]


def test_update_names_the_job_and_each_field_once() -> None:
    """scontrol update JobId=ID Key=value…, a value with spaces still one element."""
    argv = update_argv("9", JobUpdate(time_limit_minutes=30, comment="two words"))
    assert argv == ["scontrol", "update", "JobId=9", "TimeLimit=30", "Comment=two words"]


def test_update_with_nothing_to_change_is_refused() -> None:
    """An empty update builds no command."""
    with pytest.raises(InvalidSubmission):
        update_argv("9", JobUpdate())
