"""`scontrol` read from a pipe, as a Command.interactive: the same `show` a process would run,
answered by a long-lived scontrol (local://) without a new process. Pure.

readline echoes each line it reads from a pipe after the prompt, on Slurm 22.05 and 24.11 alike;
`show hostnames <token>` prints its argument alone and asks the controller nothing, which makes
it the end marker.
"""

from __future__ import annotations

from transport.base import Interactive

PROMPT = "scontrol: "
MARKER = "show hostnames {}"


def scontrol_session(options: tuple[str, ...], line: str) -> Interactive:
    """`scontrol <options>` asked `line`: what `scontrol <options> <line words>` prints."""
    return Interactive(("scontrol", *options), line, MARKER, PROMPT)
