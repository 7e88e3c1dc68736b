"""JSON log lines for log shippers (``FRAUDSTREAM_LOG_FORMAT=json``).

Example:
    >>> import logging
    >>> record = logging.LogRecord("fraudstream", logging.INFO, __file__, 1, "scored %d", (5,), None)
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["level"], line["logger"], line["message"]
    ('INFO', 'fraudstream', 'scored 5')
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["JsonFormatter", "logging_config"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def logging_config(level: str) -> dict[str, Any]:
    """A ``dictConfig`` that sends everything through :class:`JsonFormatter` to stderr."""
    levels = {"crit": "CRITICAL", "error": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": levels.get(level, level.upper())},
    }
