"""Log output: one JSON object per line for log pipelines (CloudWatch, Loki), or plain text.

Every logger of the service is under `slurm_graphql` (`slurm_graphql.request`, `.audit`,
`.poller`, `.snapshots`, `.limits`, `.serve`…; tests/server/test_logs.py checks), so one
configuration reaches them all. `slurm-graphql serve` and the Lambda handler own their process
and configure it whole (`whole_process=True`): the handler goes on the root logger, so uvicorn's,
strawberry's and any library's lines come out in the same format, and Python warnings with them.
An application embedding the app (tests, an ASGI server of its own) configures only
`slurm_graphql.*` and keeps its root logger as it likes it.

A record is one line in JSON, traceback included (the `error` key). In text, a traceback's lines
follow the record's, indented, so a reader (or a multiline rule) can tell where a record ends;
the message itself is escaped (resolvers/log_values.py), so it cannot start a line of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from resolvers.log_values import one_line

ROOT = "slurm_graphql"
TEXT_FORMAT = "%(levelname)s %(name)s %(message)s"
MAX_MESSAGE = 100_000  # characters of a text line's message; a longer one is cut


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
        elif record.exc_text:
            line["error"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`LEVEL logger message`, the message escaped; a traceback follows on indented lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  # logging's name
        return TEXT_FORMAT % {**vars(record), "message": one_line(record.message, MAX_MESSAGE)}

    def formatException(self, ei: Any) -> str:  # noqa: N802  # logging's name
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802  # logging's name
        return _indented(stack_info)


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def configure_logging(
    log_format: str, level: str, stream: TextIO | None = None, whole_process: bool = False
) -> None:
    """Send records at `level` and above to `stream` (stderr) in `log_format`: the service's own
    (`slurm_graphql.*`), or with `whole_process` every logger's, through the root logger."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    ours = logging.getLogger(ROOT)
    _replace_handlers(ours, None)
    ours.setLevel(level.upper())
    if whole_process:
        root = logging.getLogger()
        # Lambda's runtime and anything before us put handlers here: theirs would write each
        # line a second time, in their format.
        _replace_handlers(root, handler)
        root.setLevel(level.upper())
        ours.propagate = True
        # warnings.warn would print to stderr in its own format.
        logging.captureWarnings(True)
        return
    _replace_handlers(ours, handler)
    # Lambda's runtime puts a handler on the root logger: without this, every line is doubled.
    ours.propagate = False


def _replace_handlers(logger: logging.Logger, handler: logging.Handler | None) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
    if handler is not None:
        logger.addHandler(handler)
