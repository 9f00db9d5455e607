"""Commands that act on one job (scancel, scontrol hold/release/requeue/update). Pure builders:
the id is validated by the caller's lookup first, every value here is validated before it
becomes one argv element, and `--` ends the options wherever the command accepts it."""

from __future__ import annotations

from resolvers.slurm.job_update import JobUpdate, update_arguments, validate_signal


def cancel_argv(job_id: str, signal: str | None = None) -> list[str]:
    """`scancel` the job, or only send it `signal` (validated: a name or number Slurm knows)."""
    if signal is None:
        return ["scancel", "--", job_id]
    return ["scancel", f"--signal={validate_signal(signal)}", "--", job_id]


def hold_argv(job_id: str) -> list[str]:
    return ["scontrol", "hold", job_id]


def release_argv(job_id: str) -> list[str]:
    return ["scontrol", "release", job_id]


def requeue_argv(job_id: str, hold: bool = False) -> list[str]:
    """Requeue the job; with `hold`, it stays held afterwards (`requeuehold`)."""
    return ["scontrol", "requeuehold" if hold else "requeue", job_id]


def update_argv(job_id: str, update: JobUpdate) -> list[str]:
    """`scontrol update JobId=…` with the fields `update` changes, validated."""
    return ["scontrol", "update", f"JobId={job_id}", *update_arguments(update)]
