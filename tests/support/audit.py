"""Log lines as a test sees them: the structured fields of each record of a logger."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def logged(name: str, level: int = logging.INFO) -> Iterator[list[dict[str, Any]]]:
    """Collects the `request` fields (and the message) of every record `name` logs at `level`
    or above inside the block."""
    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append({**getattr(record, "request", {}), "message": record.getMessage()})

    handler = Keep()
    logger = logging.getLogger(name)
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


@contextmanager
def audit_lines() -> Iterator[list[dict[str, Any]]]:
    """Collects the `request` fields of every audit record logged inside the block."""
    with logged("slurm_graphql.audit") as lines:
        yield lines
