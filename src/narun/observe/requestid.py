"""Request IDs: one per request, taken from the client or made here, in every log line.

A gateway accepts the client's ``X-Request-ID`` when it is well formed (1 to 200
printable ASCII characters, no space at either end) and otherwise makes one: 16 lower-case
hex digits, 64 random bits. The ID crosses NATS as ``Narun-Request-Id`` and is the value
of :data:`current` while a gateway or a consumer works on the request, so that the log
filter of :mod:`narun.observe.log` can add it to every record.

IDs only need to be unique, not secret: they come from :func:`random.getrandbits` (five
times cheaper than ``os.urandom``; the module reseeds itself in a forked child).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar
from random import getrandbits

__all__ = [
    "HEADER",
    "MAX_LENGTH",
    "accept",
    "current",
    "from_headers",
    "is_valid",
    "new_request_id",
]

HEADER = b"x-request-id"
"""The HTTP field (and, as ``x-request-id``, the gRPC metadata key)."""
MAX_LENGTH = 200
"""The longest client-chosen ID accepted."""

current: ContextVar[str | None] = ContextVar("narun_request_id", default=None)
"""The ID of the request being handled in this context, if any."""

# Printable ASCII (0x20-0x7E), 1 to MAX_LENGTH characters, no space at either end
# (HTTP parsers and NATS strip those, so the ID would not survive the trip).
_VALID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?")
_VALID_BYTES = re.compile(rb"[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?")


def new_request_id() -> str:
    """A fresh ID: 16 lower-case hex digits."""
    return getrandbits(64).to_bytes(8, "big").hex()


def is_valid(value: str) -> bool:
    """Whether ``value`` is an acceptable request ID (see the module doc)."""
    return _VALID.fullmatch(value) is not None


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The first ``x-request-id`` of ASGI ``headers`` if well formed, else a new ID."""
    for name, value in headers:
        if name == HEADER:
            if _VALID_BYTES.fullmatch(value) is not None:
                return value.decode("ascii")
            break
    return new_request_id()


def accept(value: str | None) -> str:
    """``value`` if it is a well-formed ID, else a new one."""
    if value is not None and _VALID.fullmatch(value) is not None:
        return value
    return new_request_id()
