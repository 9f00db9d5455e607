"""Output filename patterns resolve as slurmstepd resolves them (src/slurmd/common/fname.c)."""

from __future__ import annotations

import dataclasses

import pytest

from resolvers.slurm.filename import (
    NO_ARRAY_INDEX,
    BatchJob,
    default_pattern,
    recover_pattern,
    resolve_pattern,
    slurm_line,
)

JOB = BatchJob(
    job_id=42,
    array_job_id=None,
    array_task_id=None,
    user="alice",
    name="my job",
    work_dir="/home/alice",
    batch_host="n1",
    slurm_version="24.11.5",
)
TASK = dataclasses.replace(JOB, job_id=45, array_job_id=40, array_task_id=13)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/out/%j.out", "/out/42.out"),
        ("/out/%J.out", "/out/42.out"),  # the batch step has no step suffix
        ("/out/%A_%a.out", f"/out/42_{NO_ARRAY_INDEX}.out"),  # not an array: NO_VAL
        ("/out/%u-%x-%N.out", "/out/alice-my job-n1.out"),
        ("/out/%n-%t-%s", "/out/0-0-batch"),
        ("/out/%4j", "/out/0042"),
        ("/out/%012j", "/out/0000000042"),  # widths stop at 10
        ("/out/%3s", "/out/batch"),  # %s is a word for the batch step: no padding
        ("/out/100%%", "/out/100%"),
        ("/out/%%j", "/out/%j"),
        ("/out/%%%j", "/out/%42"),
        ("/out/%z", "/out/%z"),  # unknown letters stay
        ("/out/%12z", "/out/2z"),  # ... but a width loses the % and all but its last digit
        ("/out/%", "/out/%"),
        ("/out/%5", "/out/5"),
        ("/out/%5%j", "/out/542"),
        ("/out/%b", "/out/4"),  # 24.11: NO_VAL modulo 10
        ("out-%j.txt", "/home/alice/out-42.txt"),  # relative to the work directory
        ("/out/a\\%j", "/out/a%j"),  # a backslash turns expansion off
        ("/out/a\\\\b%j", "/out/a\\b%j"),
        ("out\\%j", "/home/aliceout%j"),  # slurmstepd joins an escaped one without a slash
        ("3", "/dev/null"),  # "task 3 only": the batch script is task 0
        ("0", "/home/alice/0"),
    ],
)
def test_patterns_resolve_like_slurmstepd(pattern: str, path: str) -> None:
    """Every specifier, width, escape and quirk of slurmstepd's batch filenames."""
    assert resolve_pattern(pattern, JOB) == path


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/out/%A_%a.out", "/out/40_13.out"),
        ("/out/%j", "/out/45"),
        ("/out/%4a-%b-%2b", "/out/0013-3-03"),
    ],
)
def test_array_tasks(pattern: str, path: str) -> None:
    """An array task knows its master id, its index and (24.11) its index modulo 10."""
    assert resolve_pattern(pattern, TASK) == path


def test_b_is_literal_before_24_11() -> None:
    """`%b` arrived in Slurm 24.11; 22.05's slurmstepd leaves it as written."""
    old = dataclasses.replace(TASK, slurm_version="22.05.8")
    assert resolve_pattern("/out/%b-%a", old) == "/out/%b-13"
    assert resolve_pattern("/out/%4b-%a", old) == "/out/4b-13"


def test_unknowns_give_none() -> None:
    """What cannot be known yet gives no path rather than a wrong one."""
    pending = dataclasses.replace(JOB, batch_host=None)
    assert resolve_pattern("/out/%N.out", pending) is None
    assert resolve_pattern("/out/%j.out", pending) == "/out/42.out"
    remainder = dataclasses.replace(TASK, job_id=None, array_task_id=None)
    assert resolve_pattern("/out/%A_%a", remainder) is None
    assert resolve_pattern("/out/%j", remainder) is None
    assert resolve_pattern("/out/%A.log", remainder) == "/out/40.log"
    assert resolve_pattern("/out/%b", dataclasses.replace(JOB, slurm_version=None)) is None
    assert resolve_pattern("out", dataclasses.replace(JOB, work_dir=None)) is None


def test_defaults() -> None:
    """Without --output a job writes slurm-%j.out, an array task slurm-%A_%a.out."""
    assert resolve_pattern(default_pattern("/home/alice", False), JOB) == (
        "/home/alice/slurm-42.out"
    )
    assert resolve_pattern(default_pattern("/home/alice", True), TASK) == (
        "/home/alice/slurm-40_13.out"
    )


@pytest.mark.parametrize(
    ("printed", "array_task", "pattern"),
    [
        # 22.05 prints the default expanded with the job's own id, even for an array task.
        ("/home/alice/slurm-45.out", False, "/home/alice/slurm-%j.out"),
        ("/home/alice/slurm-45.out", True, "/home/alice/slurm-%A_%a.out"),
        # 24.11 prints the default as a pattern; both print a given pattern as submitted.
        ("/home/alice/slurm-%A_%a.out", True, "/home/alice/slurm-%A_%a.out"),
        ("/home/alice/%x.out", False, "/home/alice/%x.out"),
        ("/home/alice/slurm-46.out", False, "/home/alice/slurm-46.out"),
    ],
)
def test_recover_pattern(printed: str, array_task: bool, pattern: str) -> None:
    """squeue's column gives the same pattern on 22.05 and 24.11."""
    recovered = recover_pattern(printed, work_dir="/home/alice", job_id=45, array_task=array_task)
    assert recovered == pattern


def test_slurm_line() -> None:
    """Versions compare by major and minor."""
    assert slurm_line("24.11.5") == (24, 11)
    assert slurm_line("22.05.8") == (22, 5)
    assert slurm_line(None) is None
    assert slurm_line("garbage") is None
