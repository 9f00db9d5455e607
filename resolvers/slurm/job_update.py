"""Changes to a job (`scontrol update`) and signals (`scancel --signal`), validated. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from resolvers.slurm.job_fields import (
    MAX_MINUTES,
    Dependency,
    InvalidSubmission,
    comment_value,
    count_value,
    dependency_option,
    job_name,
    matching,
    slurm_names,
)


@dataclass(frozen=True)
class JobUpdate:
    """Changes to a job, for `scontrol update`; None leaves a field as it is."""

    time_limit_minutes: int | None = None
    name: str | None = None
    comment: str | None = None
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    reservation: str | None = None
    nice: int | None = None
    dependencies: tuple[Dependency, ...] | None = None
    any_dependency: bool = False


def update_arguments(update: JobUpdate) -> list[str]:
    """`scontrol update` fields (`Key=value`, one argv element each) for `update`, validated."""
    fields = []
    if update.time_limit_minutes is not None:
        minutes = count_value("timeLimitMinutes", update.time_limit_minutes, MAX_MINUTES)
        fields.append(f"TimeLimit={minutes}")
    if update.name is not None:
        fields.append("Name=" + job_name(update.name))
    if update.comment is not None:
        fields.append("Comment=" + comment_value(update.comment))
    fields += slurm_names(
        ("Partition", "partition", update.partition),
        ("QOS", "qos", update.qos),
        ("Account", "account", update.account),
        ("Reservation", "reservation", update.reservation),
    )
    if update.nice is not None:
        if not -2_147_483_645 <= update.nice <= 2_147_483_645:
            raise InvalidSubmission("nice", "is out of range")
        fields.append(f"Nice={update.nice}")
    if update.dependencies is not None:
        value = dependency_option(update.dependencies, update.any_dependency)
        fields.append(f"Dependency={value}")
    if not fields:
        raise InvalidSubmission("input", "names nothing to change")
    return fields


_SIGNAL = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+]{0,15}\Z|^\d{1,2}\Z", re.ASCII)


def validate_signal(value: str) -> str:
    return matching("signal", value, _SIGNAL, "a signal name or number such as TERM or 15")
