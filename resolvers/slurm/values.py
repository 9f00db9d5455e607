"""Small pure converters for the ways Slurm prints values. Shared by every parser."""

from __future__ import annotations

from functools import lru_cache

_ABSENT = frozenset({"", "(null)", "N/A", "n/a", "None", "NONE", "Unknown", "UNKNOWN", "(none)"})


def text_or_none(value: str) -> str | None:
    """Slurm prints absence as `(null)`, `N/A`, `None`…; all of them become None."""
    return None if value in _ABSENT else value


def int_or_none(value: str) -> int | None:
    if value.isdigit():  # the common case, without the cost of a caught exception
        return int(value)
    try:
        return int(value)
    except ValueError:
        return None


def float_or_none(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def epoch_or_none(value: str) -> int | None:
    """A time printed under SLURM_TIME_FORMAT=%s; 0, N/A, Unknown and None mean unset."""
    seconds = int_or_none(value)
    return seconds if seconds else None


@lru_cache(maxsize=4096)  # a cluster has few distinct time limits; listings repeat them
def minutes_or_none(value: str) -> int | None:
    """A Slurm duration in whole minutes, seconds rounded up; `UNLIMITED` and unset are None.

    Slurm's grammar: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
    """
    days, _, clock = value.rpartition("-")
    parts = clock.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    if days and not days.isdigit():
        return None
    numbers = [int(p) for p in parts]
    if days:
        hours, minutes, seconds = [*numbers, 0, 0][:3]
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:
        hours, (minutes, seconds) = 0, [*numbers, 0][:2]
    return int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated Slurm list; absent values give ()."""
    return () if text_or_none(value) is None else tuple(v for v in value.split(",") if v)
