"""Partitions from `scontrol -o show partition`. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.interactive import scontrol_session
from resolvers.slurm.keyvalue import parse_records
from resolvers.slurm.values import int_or_none, minutes_or_none, text_or_none
from transport.base import Command

KNOWN_KEYS = [
    "PartitionName",
    "AllowGroups",
    "AllowAccounts",
    "AllowQos",
    "AllocNodes",
    "Default",
    "QoS",
    "DefaultTime",
    "DisableRootJobs",
    "ExclusiveUser",
    "ExclusiveTopo",
    "GraceTime",
    "Hidden",
    "MaxNodes",
    "MaxTime",
    "MinNodes",
    "LLN",
    "MaxCPUsPerNode",
    "MaxCPUsPerSocket",
    "Nodes",
    "NodeSets",
    "PriorityJobFactor",
    "PriorityTier",
    "RootOnly",
    "ReqResv",
    "OverSubscribe",
    "OverTimeLimit",
    "PreemptMode",
    "State",
    "TotalCPUs",
    "TotalNodes",
    "SelectTypeParameters",
    "JobDefaults",
    "DefMemPerNode",
    "DefMemPerCPU",
    "MaxMemPerNode",
    "MaxMemPerCPU",
    "TRES",
    "TRESBillingWeights",
    "DenyAccounts",
    "DenyQos",
    "PowerDownOnIdle",
    "ResumeTimeout",
    "SuspendTime",
    "SuspendTimeout",
]


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    name: str
    state: str
    is_default: bool
    hidden: bool
    max_time_minutes: int | None
    default_time_minutes: int | None
    max_nodes: int | None
    total_cpus: int
    total_nodes: int
    node_list: str | None
    priority_tier: int | None


def show_partitions_command() -> Command:
    """Every partition, hidden ones included, one line each."""
    options = ("--oneliner", "--all")
    return Command(
        ("scontrol", *options, "show", "partition"),
        interactive=scontrol_session(options, "show partition"),
    )


def parse_partitions(text: str) -> list[PartitionRecord]:
    records = []
    for fields in parse_records(text, KNOWN_KEYS, ()):
        name = fields.get("PartitionName", "").strip()
        if not name:
            raise ParseError("scontrol show partition", str(fields)[:200], "no PartitionName")
        value = {key: raw.strip() for key, raw in fields.items()}.get
        records.append(
            PartitionRecord(
                name=name,
                state=value("State", "UNKNOWN"),
                is_default=value("Default") == "YES",
                hidden=value("Hidden") == "YES",
                max_time_minutes=minutes_or_none(value("MaxTime", "")),
                default_time_minutes=minutes_or_none(value("DefaultTime", "")),
                max_nodes=int_or_none(value("MaxNodes", "")),
                total_cpus=int_or_none(value("TotalCPUs", "")) or 0,
                total_nodes=int_or_none(value("TotalNodes", "")) or 0,
                node_list=text_or_none(value("Nodes", "")),
                priority_tier=int_or_none(value("PriorityTier", "")),
            )
        )
    return records
