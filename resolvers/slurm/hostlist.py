"""Slurm hostlist expressions (`n[1-3,7],gpu[01-02]`) expanded to node names. Pure."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import product

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?\Z")


@lru_cache(maxsize=4096)
def expand_hostlist(expression: str) -> tuple[str, ...]:
    """Every node name an expression denotes, in order; `()` for empty, `(None)` or `n/a`."""
    expression = expression.strip()
    if expression in ("", "(null)", "None", "n/a"):
        return ()
    names: list[str] = []
    for item in _split_top_level(expression):
        names.extend(_expand_item(item))
    return tuple(names)


def _split_top_level(expression: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(expression[start:index])
            start = index + 1
    items.append(expression[start:])
    return [item for item in items if item]


def _expand_item(item: str) -> list[str]:
    # Alternate literal text and bracketed range lists: "rack[1-2]-n[01-03]".
    parts = re.split(r"\[([^\]]*)\]", item)
    choices: list[list[str]] = []
    for index, part in enumerate(parts):
        choices.append(_expand_ranges(part, item) if index % 2 else [part])
    return ["".join(combination) for combination in product(*choices)]


def _expand_ranges(ranges: str, item: str) -> list[str]:
    values: list[str] = []
    for piece in ranges.split(","):
        match = _RANGE.match(piece.strip())
        if match is None:
            raise ValueError(f"bad hostlist range {piece!r} in {item!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        width = len(low)
        values.extend(str(number).zfill(width) for number in range(int(low), int(high) + 1))
    return values
