"""Logging set-up for narun's programs. Library modules only call ``getLogger``.

Every record gets a ``request_id`` attribute (:class:`RequestIdFilter`): the ID of the
request being handled where the record was made, or ``None``. The text format shows it
as `` [req=<id>]`` at the end of the line, the JSON format as a ``request_id`` field.
Access log records (logger ``narun.access``) also carry their fields as a dict in the
``narun`` attribute, which the JSON format adds to the document.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

from narun.observe import requestid

__all__ = [
    "ACCESS_LOGGER",
    "JSONFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "access",
    "configure",
]

LogFormat = Literal["text", "json"]

ACCESS_LOGGER = "narun.access"
"""The logger of the access log: one INFO record per request, gateway and consumer."""

_access = logging.getLogger(ACCESS_LOGGER)


def access(msg: str, args: tuple[object, ...], fields: dict[str, object]) -> None:
    """Log one access line (INFO on ``narun.access``); ``fields`` go to the JSON format.

    The caller checks ``isEnabledFor(INFO)`` first. The record is made directly, without
    ``Logger.info``'s search of the call stack for the caller (a third of the cost).
    """
    record = _access.makeRecord(
        ACCESS_LOGGER, logging.INFO, ACCESS_LOGGER, 0, msg, args, None, extra={"narun": fields}
    )
    _access.handle(record)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the current request's ID (unless already set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            record.request_id = requestid.current.get()
        return True


class TextFormatter(logging.Formatter):
    """A ``logging.Formatter`` that appends `` [req=<id>]`` when the record has an ID.

    The date part of ``%(asctime)s`` (default ``datefmt`` only) is made once a second.
    """

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        rid = record.__dict__.get("request_id")
        return f"{line} [req={rid}]" if rid else line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request ID, fields."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # the date part is made once a second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            self._second = second
        doc: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = record.__dict__.get("request_id")
        if rid:
            doc["request_id"] = rid
        fields = record.__dict__.get("narun")
        if isinstance(fields, dict):
            for key, value in fields.items():
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure(
    *,
    level: str = "info",
    fmt: LogFormat = "text",
    name: str = "narun",
    access_log: bool = True,
) -> None:
    """Send log records of every library to stderr, once, in ``fmt``.

    The access log (``narun.access``, INFO) follows ``level`` unless ``access_log`` is
    false, which silences it whatever the level.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            TextFormatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py is chatty at INFO about every reconnect attempt.
    logging.getLogger("nats").setLevel(max(root.level, logging.WARNING))
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.NOTSET if access_log else logging.CRITICAL + 1)
