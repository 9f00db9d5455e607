"""Small pure converters for the ways Slurm prints values. Shared by every parser."""

from __future__ import annotations

from functools import lru_cache

_ABSENT = frozenset({"", "(null)", "N/A", "n/a", "None", "NONE", "Unknown", "UNKNOWN", "(none)"})


def text_or_none(value: str) -> str | None:
    """Slurm prints absence as `(null)`, `N/A`, `None`…; all of them become None."""
    return None if value in _ABSENT else value


# Slurm prints no number longer than a 64-bit one; int() refuses more than 4,300 digits anyway.
MAX_DECIMAL_DIGITS = 20


def is_decimal(text: str) -> bool:
    """ASCII digits, as many as a 64-bit number has: what Slurm's strtol reads as a number.
    str.isdigit alone also takes "²" and other scripts' digits, which int() refuses or reads
    differently, and any number of digits, which int() refuses past 4,300."""
    return 0 < len(text) <= MAX_DECIMAL_DIGITS and text.isascii() and text.isdigit()


def int_or_none(value: str) -> int | None:
    if is_decimal(value):  # the common case, without the cost of a caught exception
        return int(value)
    if not value.isascii():  # int() reads other scripts' digits; Slurm prints none
        return None
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
    if not 1 <= len(parts) <= 3 or not all(is_decimal(p) for p in parts):
        return None
    if days and not is_decimal(days):
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
