"""Log output: one JSON object per line for log pipelines (CloudWatch, Loki), or plain text.

Only the project's own loggers (`slurm_graphql.*`) are configured here, with a handler of their
own: uvicorn and the Lambda runtime keep their root logger set up as they like it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

ROOT = "slurm_graphql"


class JsonFormatter(logging.Formatter):
    """A line of JSON: time, level, logger, message, a request's fields, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            line.update(request)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send `slurm_graphql.*` records at `level` and above to `stream` (stderr) in `log_format`."""
    logger = logging.getLogger(ROOT)
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    # Lambda's runtime puts a handler on the root logger: without this, every line is doubled.
    logger.propagate = False
