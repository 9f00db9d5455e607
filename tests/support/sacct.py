"""What a captured sacct command was asked to print between its fields."""

from __future__ import annotations

from collections.abc import Sequence

from resolvers.slurm.sacct import SEPARATOR


def sacct_boundary(argv: Sequence[str]) -> str:
    """The random boundary after \\x1f in sacct's `--delimiter=` (captures made before the
    boundary existed have none: "")."""
    [value] = [a.removeprefix("--delimiter=") for a in argv if a.startswith("--delimiter=")]
    if not value.startswith(SEPARATOR):
        raise ValueError(f"not a delimiter of ours: {value!r}")
    return value[len(SEPARATOR) :]


def sacct_format(argv: Sequence[str]) -> tuple[str, ...]:
    """The columns a captured sacct was asked for (`--format=`), in order: a capture is parsed
    with its own field list, so captures made before a column was added still read."""
    [value] = [a.removeprefix("--format=") for a in argv if a.startswith("--format=")]
    return tuple(value.split(","))
