"""The audit trail as a test sees it: the structured fields of each `slurm_graphql.audit` line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def audit_lines() -> Iterator[list[dict[str, Any]]]:
    """Collects the `request` fields of every audit record logged inside the block."""
    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append({**getattr(record, "request", {}), "message": record.getMessage()})

    handler = Keep()
    audit = logging.getLogger("slurm_graphql.audit")
    level = audit.level
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        audit.removeHandler(handler)
        audit.setLevel(level)
