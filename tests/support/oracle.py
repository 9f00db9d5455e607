"""Slurm's own answer, for comparison: `squeue --json` and `sinfo --json`.

These go through Slurm's data_parser plugin, a code path independent of ours. Field shapes differ
between Slurm 22.05 (plain numbers) and 23.x/24.x (`{set, infinite, number}` objects, state lists),
so every value passes through the normalisers below.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any


def _slurm_json(*argv: str) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout
    data: dict[str, Any] = json.loads(out.decode("utf-8", errors="replace"))
    return data


def squeue_json() -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = _slurm_json("squeue", "--all", "--states=all", "--json")["jobs"]
    return jobs


def nodes_json() -> list[dict[str, Any]]:
    """One record per node: `scontrol --json show nodes` (23.02+), else `sinfo --json` (22.05,
    where scontrol has no --json; newer sinfo groups nodes instead of listing them)."""
    probe = subprocess.run(
        ["scontrol", "--json", "show", "nodes"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        nodes: list[dict[str, Any]] = json.loads(probe.stdout.decode(errors="replace"))["nodes"]
        return nodes
    nodes = _slurm_json("sinfo", "--all", "--json")["nodes"]
    return nodes


def number(value: Any) -> int | None:
    """22.05 prints numbers; newer versions print {"set": …, "infinite": …, "number": …}."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        return int(value["number"])
    return None if value is None else int(value)


def first_state(value: Any) -> str:
    return str(value[0] if isinstance(value, list) else value)


def exit_code(value: Any) -> tuple[int, int] | None:
    """(exit code, signal) from a raw wait status (22.05) or a process exit object (newer)."""
    if isinstance(value, dict):
        code = number(value.get("return_code"))
        signal = number((value.get("signal") or {}).get("id"))
        return (code or 0, signal or 0)
    if value is None:
        return None
    # A signal's end has no exit code (WEXITSTATUS is defined only for an exit): 0, as sacct.
    status = int(value)
    return (0, status & 0x7F) if status & 0x7F else (status >> 8, 0)


def as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value or "").split(",") if v]
