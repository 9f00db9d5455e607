"""Values written into log lines, made inert: one record is one line, whatever a value holds.

Job names, Slurm's stderr, claimed user names and a caller's request id are text someone else
chose. Written raw into a text log, a newline in one would start a line that reads like ours
(`INFO slurm_graphql.audit audit … outcome=done`); a terminal escape would rewrite what an
operator sees. Control characters (C0, DEL, C1, and the Unicode line and paragraph separators
that some log viewers break lines at) are shown as Python escapes instead, and so is the
backslash, so an escape in the log always means one in the value.
"""

from __future__ import annotations

import re

_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_UNSAFE = re.compile(f"[{_CONTROL}\\\\]")
_CONTROLS = re.compile(f"[{_CONTROL}]")
MAX_VALUE = 1000


def loggable(value: object, limit: int = MAX_VALUE) -> str:
    """`value` as text that holds no line break or control character, at most `limit`
    characters before escaping (longer values end with `…`)."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return _UNSAFE.sub(_escape, text)


def one_line(text: str, limit: int) -> str:
    """`text` with control characters escaped, backslashes left alone: for a whole message,
    whose values loggable() may have escaped already (escaping them again would double them)."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    return char.encode("unicode_escape").decode("ascii")
