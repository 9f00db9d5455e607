"""`scontrol` read from a pipe, as a Command.interactive: the same `show` a process would run,
answered by a long-lived scontrol (local://) without a new process. Pure.

readline echoes each line it reads from a pipe after the prompt, on Slurm 22.05 and 24.11 alike;
`show hostnames <token>` prints its argument alone and asks the controller nothing, which makes
it the end marker.

A session answers what a new process would: scontrol keeps its last node, partition or job list
and asks slurmctld for it again with that list's time, and slurmctld answers "no change" only
if nothing changed after the second before it (proc_req.c: `last_update - 1 >=
last_node_update`); a node's CPU load or free memory changing counts as a change (node_mgr.c).
"""

from __future__ import annotations

from collections.abc import Callable

from transport.base import Interactive

PROMPT = "scontrol: "
MARKER = "show hostnames {}"


def scontrol_session(
    options: tuple[str, ...], line: str, translate: Callable[[str], str | None] | None = None
) -> Interactive:
    """`scontrol <options>` asked `line`: what `scontrol <options> <line words>` prints, or
    what `translate` makes of it (Interactive.translate)."""
    return Interactive(("scontrol", *options), line, MARKER, PROMPT, translate)
