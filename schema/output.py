"""A job's output file, or the end of it."""

from __future__ import annotations

import enum

import strawberry

from resolvers.output import OutputTail
from schema.scalars import Long


@strawberry.enum(description="Which of a job's output files.")
class OutputStream(enum.Enum):
    STDOUT = "STDOUT"
    STDERR = "STDERR"


@strawberry.type(description="The end of an output file, as its reader may see it.")
class JobOutput:
    path: str
    text: str = strawberry.field(description="UTF-8; bytes that are not are replaced by U+FFFD.")
    truncated: bool = strawberry.field(description="True when the file holds more than `text`.")
    size_bytes: Long

    @classmethod
    def from_tail(cls, tail: OutputTail) -> JobOutput:
        return cls(
            path=tail.path,
            text=tail.text,
            truncated=tail.truncated,
            size_bytes=Long(tail.size_bytes),
        )
