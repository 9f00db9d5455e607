"""Nodes from `scontrol -o show node`. Pure.

A node's state prints as `BASE+FLAG+FLAG` (`IDLE+DRAIN`, `MIXED+NOT_RESPONDING`); its reason is
free text followed by who set it and when: `disk failure on sda [root@1795863204]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.interactive import scontrol_session
from resolvers.slurm.keyvalue import parse_records
from resolvers.slurm.values import (
    epoch_or_none,
    float_or_none,
    int_or_none,
    split_list,
    text_or_none,
)
from transport.base import Command

KNOWN_KEYS = [
    "NodeName",
    "Arch",
    "CoresPerSocket",
    "CPUAlloc",
    "CPUEfctv",
    "CPUTot",
    "CPULoad",
    "AvailableFeatures",
    "ActiveFeatures",
    "Gres",
    "GresDrain",
    "GresUsed",
    "NodeAddr",
    "NodeHostName",
    "Port",
    "Version",
    "OS",
    "RealMemory",
    "AllocMem",
    "FreeMem",
    "Sockets",
    "Boards",
    "State",
    "ThreadsPerCore",
    "TmpDisk",
    "Weight",
    "Owner",
    "MCS_label",
    "Partitions",
    "BootTime",
    "SlurmdStartTime",
    "LastBusyTime",
    "ResumeAfterTime",
    "CfgTRES",
    "AllocTRES",
    "CapWatts",
    "CurrentWatts",
    "AveWatts",
    "ExtSensorsJoules",
    "ExtSensorsWatts",
    "ExtSensorsTemp",
    "Reason",
    "Comment",
    "Extra",
    "CPUSpecList",
    "MemSpecLimit",
    "CoreSpecCount",
    "InstanceId",
    "InstanceType",
    "Topology",
]
FREE_TEXT_KEYS = ("Reason", "OS", "Comment", "Extra")

_REASON = re.compile(r"^(?P<text>.*?)\s*\[(?P<user>[^@\]]+)@(?P<time>[^\]]+)\]\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    state: str  # the base state as Slurm prints it: IDLE, MIXED, DOWN, …
    state_flags: tuple[str, ...]  # DRAIN, NOT_RESPONDING, …
    reason: str | None
    reason_set_by: str | None
    reason_time: int | None
    cpus: int
    cpus_allocated: int
    cpu_load: float | None
    real_memory_mb: int
    allocated_memory_mb: int
    free_memory_mb: int | None
    features: tuple[str, ...]
    active_features: tuple[str, ...]
    gres: tuple[str, ...]
    partitions: tuple[str, ...]
    address: str | None
    hostname: str | None
    architecture: str | None
    operating_system: str | None
    slurmd_version: str | None
    boot_time: int | None
    slurmd_start_time: int | None
    weight: int | None
    gres_used: tuple[str, ...] = ()  # GresUsed: `gpu:a100:1(IDX:0)`, …


def show_nodes_command() -> Command:
    """Every node, one line each, times as epoch seconds. `--details` adds GresUsed (and
    GresDrain): without it scontrol prints no GPU allocation at all, and Stats.gpus said 0
    allocated while a job held a GPU (found on the local cluster with LOCAL_CLUSTER_GPUS)."""
    options = ("--details", "--oneliner", "--all")
    return Command(
        ("scontrol", *options, "show", "node"),
        env={"SLURM_TIME_FORMAT": "%s"},
        interactive=scontrol_session(options, "show node"),
    )


def parse_nodes(text: str) -> list[NodeRecord]:
    records = []
    for fields in parse_records(text, KNOWN_KEYS, FREE_TEXT_KEYS):
        value = {key: raw.strip() for key, raw in fields.items()}.get
        name = value("NodeName", "")
        if not name:
            raise ParseError("scontrol show node", str(fields)[:200], "no NodeName")
        base, *flags = value("State", "UNKNOWN").split("+")
        reason, set_by, set_at = (
            _split_reason(value("Reason", "")) if _holds_reason(base, flags) else (None, None, None)
        )
        records.append(
            NodeRecord(
                name=name,
                state=base.rstrip("*~#!%$@^-"),
                state_flags=tuple(flags),
                reason=reason,
                reason_set_by=set_by,
                reason_time=set_at,
                cpus=int_or_none(value("CPUTot", "")) or 0,
                cpus_allocated=int_or_none(value("CPUAlloc", "")) or 0,
                cpu_load=float_or_none(value("CPULoad", "")),
                real_memory_mb=int_or_none(value("RealMemory", "")) or 0,
                allocated_memory_mb=int_or_none(value("AllocMem", "")) or 0,
                free_memory_mb=int_or_none(value("FreeMem", "")),
                features=split_list(value("AvailableFeatures", "")),
                active_features=split_list(value("ActiveFeatures", "")),
                gres=split_list(value("Gres", "")),
                partitions=split_list(value("Partitions", "")),
                address=text_or_none(value("NodeAddr", "")),
                hostname=text_or_none(value("NodeHostName", "")),
                architecture=text_or_none(value("Arch", "")),
                operating_system=text_or_none(value("OS", "")),
                slurmd_version=text_or_none(value("Version", "")),
                boot_time=epoch_or_none(value("BootTime", "")),
                slurmd_start_time=epoch_or_none(value("SlurmdStartTime", "")),
                weight=int_or_none(value("Weight", "")),
                gres_used=split_gres(value("GresUsed", "")),
            )
        )
    return records


def split_gres(text: str) -> tuple[str, ...]:
    """scontrol's Gres/GresUsed value as items; commas inside `(IDX:0,2)` do not split."""
    if not text or text == "(null)":
        return ()
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return tuple(item for item in items if item)


# A reason explains a node out of service. Slurm 24.11 keeps the last one after
# `state=resume` (for a while, in text and JSON alike) where 22.05 clears it; only these states
# show it, so both versions answer alike.
REASON_STATES = frozenset({"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING"})


def _holds_reason(base: str, flags: list[str]) -> bool:
    return base.rstrip("*~#!%$@^-") in REASON_STATES or not REASON_STATES.isdisjoint(flags)


def _split_reason(raw: str) -> tuple[str | None, str | None, int | None]:
    if text_or_none(raw) is None:
        return None, None, None
    match = _REASON.match(raw)
    if match is None:
        return raw, None, None
    return match["text"] or None, match["user"], epoch_or_none(match["time"])
