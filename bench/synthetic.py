"""A large synthetic cluster made from real rows: golden files captured from the local Slurm.

Rows are copied from `tests/golden/<version>/squeue/scenario` with fresh job ids, so every byte
pattern a parser sees (names with `|`, unicode, invalid UTF-8, pending array ranges) is Slurm's.
"""

from __future__ import annotations

import copy
import json
import random
import string
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from resolvers.slurm.jobs import FIELD_SEPARATOR, RECORD_SEPARATOR
from transport.base import decode_output

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


@lru_cache(maxsize=1)
def golden_dir() -> Path:
    """Captures of this machine's Slurm line if there are any, else the newest line's."""
    versions = sorted(p for p in GOLDEN.iterdir() if (p / "squeue" / "scenario.stdout").exists())
    if not versions:
        raise SystemExit("no golden files: run `make golden` first")
    try:
        # The installed package's version: scontrol --version needs a cluster configuration.
        query = ["dpkg-query", "--show", "--showformat=${Version}", "slurm-client"]
        out = subprocess.run(query, capture_output=True, text=True, check=True)
        local = ".".join(out.stdout.split(".")[:2])
    except (OSError, subprocess.CalledProcessError):
        return versions[-1]
    return next((p for p in versions if p.name == local), versions[-1])


def golden_text(command: str, case: str = "scenario") -> str:
    return decode_output((golden_dir() / command / f"{case}.stdout").read_bytes())


def golden_boundary() -> str:
    argv = json.loads((golden_dir() / "squeue" / "scenario.argv.json").read_text())["argv"]
    spec: str = next(a for a in argv if a.startswith("--Format="))
    return spec.rsplit(RECORD_SEPARATOR, 1)[1]


def synthetic_squeue(count: int, boundary: str, varied_names: bool = False) -> str:
    """`count` squeue rows in the API's own format, framed with `boundary`.

    Rows repeat a dozen golden rows, so they compress far better than a real cluster's; with
    `varied_names` each job gets its own random 16-character name, closer to real output.
    """
    names = random.Random(1)
    source = golden_boundary()
    end = RECORD_SEPARATOR + source
    rows = [r.lstrip("\n") for r in golden_text("squeue").split(end) if r.strip("\n")]
    out = []
    for index in range(count):
        job_id = 100_000 + index
        fields = rows[index % len(rows)].split(FIELD_SEPARATOR, 4)
        task = fields[3]
        display = str(job_id) if task == "N/A" else f"{job_id}_{task}"
        if "-" in task or "," in task:
            display = f"{job_id}_[{task}]"
        fields[0:3] = [display, str(job_id), str(job_id)]
        row = FIELD_SEPARATOR.join(fields)
        if varied_names:
            structured, separator, free = row.partition(FIELD_SEPARATOR + source)
            free = (
                "".join(names.choices(string.ascii_lowercase, k=16))
                + free[free.index(FIELD_SEPARATOR) :]
            )
            row = structured + separator + free
        out.append(row.replace(source, boundary) + RECORD_SEPARATOR + boundary)
    return "\n".join(out) + "\n"


def synthetic_squeue_json(count: int) -> str:
    """The same cluster as Slurm's own `squeue --json` would print it."""
    document: dict[str, Any] = json.loads(golden_text("squeue", "scenario-json"))
    jobs = document["jobs"]
    replicated = []
    for index in range(count):
        job = copy.copy(jobs[index % len(jobs)])
        job["job_id"] = 100_000 + index
        replicated.append(job)
    document["jobs"] = replicated
    return json.dumps(document, indent=2)
