"""Logging set-up for narun's programs. Library modules only call ``getLogger``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

__all__ = ["configure"]

LogFormat = Literal["text", "json"]


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure(*, level: str = "info", fmt: LogFormat = "text", name: str = "narun") -> None:
    """Send log records of every library to stderr, once, in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py is chatty at INFO about every reconnect attempt.
    logging.getLogger("nats").setLevel(max(root.level, logging.WARNING))
