"""Log lines: text or JSON (--log-format), the request id on every line a request
causes, and --log-file, reopened on SIGHUP so that logrotate can move it.

Every line goes to standard error; --log-file points standard error at the file (by
``dup2``), so the access log's own writes, the logging module, faulthandler's stack
dumps and a dying interpreter's last words all land there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextvars import ContextVar
from pathlib import Path

# Set by the request wrapper in the handler's task; asyncio.to_thread carries it into
# the threads the request uses.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def setup(*, verbose: bool, json_lines: bool, log_file: Path | None) -> None:
    """The root logger, writing to standard error (the log file's, if there is one)."""
    if log_file is not None:
        reopen(log_file)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if json_lines else TextLines())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )


def reopen(path: Path) -> None:
    """Point standard error at ``path``, appending: at start, and after logrotate moved
    the old file away (SIGHUP). O_APPEND keeps the lines of several workers whole."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.dup2(fd, 2)
    finally:
        os.close(fd)


class TextLines(logging.Formatter):
    """``2026-12-03 15:58:07,263 INFO satchel: message [request id]``, a traceback
    on the lines after."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = REQUEST_ID.get()
        return line if request_id is None else f"{line} [{request_id}]"


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601, milliseconds), level, logger,
    message, the request id where there is one, and a traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": utc_stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def utc_stamp(when: float) -> str:
    """``2026-12-03T15:58:07.263Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"
