"""Custom scalars, mapped from Python types in the schema's config (`SCALAR_MAP`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

# Slurm's priorities are unsigned 32-bit (priority/basic starts near 2^32), beyond GraphQL's Int.
Long = NewType("Long", int)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        serialize=int,
        parse_value=int,
        description="An integer beyond GraphQL's 32-bit Int, as a JSON number (exact to 2^53).",
    )
}


def to_datetime(epoch: int | None) -> datetime | None:
    """Slurm's epoch seconds as an aware UTC datetime (strawberry's DateTime); None stays None."""
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
