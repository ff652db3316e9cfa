"""The live job's logs: level-controlled, as text lines or one JSON object a line.

``streamrec run --log-level LEVEL --log-format text|json`` configures the ``streamrec`` logger
of the launcher and, through :data:`LEVEL_ENV` and :data:`FORMAT_ENV`, of the dataflow it
starts. What else the child writes (Bytewax, librdkafka) passes through as it is in text mode
and wrapped in the same JSON shape in JSON mode, so a log shipper sees one format.

>>> import io
>>> stream = io.StringIO()
>>> logger = configure("info", "json", stream)
>>> logger.info("ready: reading topic streamrec.events")
>>> record = orjson.loads(stream.getvalue())
>>> record["level"], record["logger"], record["message"]
('info', 'streamrec', 'ready: reading topic streamrec.events')
>>> orjson.loads(child_line("thread 'main' panicked at src/run.rs", "json"))["level"]
'error'
>>> child_line("plain text stays plain\\n", "text")
'plain text stays plain\\n'
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson

LEVEL_ENV = "STREAMREC_LOG_LEVEL"
FORMAT_ENV = "STREAMREC_LOG_FORMAT"
LOGGER = "streamrec"
#: How a line of the child's own output shows its severity (the first match wins).
_CHILD_LEVELS = (
    ("panicked", "error"),
    ("ERROR", "error"),
    ("Traceback", "error"),
    ("WARN", "warning"),
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO-8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        return _json(record.created, record.levelname.lower(), record.name, record.getMessage())


def _json(created: float, level: str, logger: str, message: str) -> str:
    moment = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    record = {"time": moment, "level": level, "logger": logger, "message": message}
    return orjson.dumps(record).decode()


def configure(level: str, fmt: str, stream: TextIO | None = None) -> logging.Logger:
    """The ``streamrec`` logger, writing ``fmt`` lines of ``level`` and above to ``stream``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    text = logging.Formatter("streamrec run: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def from_environment() -> logging.Logger:
    """The logger as the launcher configured it for this process (text at info by default)."""
    return configure(os.environ.get(LEVEL_ENV, "info"), os.environ.get(FORMAT_ENV, "text"))


def child_line(line: str, fmt: str) -> str:
    """A line of the child's output as the log format wants it (JSON lines pass as they are)."""
    if fmt != "json" or line.startswith("{"):
        return line
    level = next((level for mark, level in _CHILD_LEVELS if mark in line), "info")
    return _json(datetime.now(UTC).timestamp(), level, "bytewax", line.rstrip("\n")) + "\n"


def error_line(message: str, fmt: str) -> str:
    """A command's one-line error, in the log format."""
    if fmt != "json":
        return message
    return _json(datetime.now(UTC).timestamp(), "error", LOGGER, message)
