"""WebSocket messages inside a stream's body, as pure code (docs/protocol.md, *WebSockets*).

A WebSocket travels as a stream whose body, in each direction, is a sequence of
records: one byte of type, four bytes of length (unsigned big-endian), then the
payload. A TEXT record carries UTF-8, a BINARY record bytes, a CLOSE record a close code
(two bytes) and a UTF-8 reason. Records ignore the stream's frame boundaries: a record
may span DATA frames and a frame may hold several records. :func:`encode_message` and
:func:`encode_close` build records; :class:`MessageDecoder` takes body chunks as they
come and returns whole messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from narun.protocol.stream import ABORT_BAD_PEER, StreamError

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "MAX_MESSAGE",
    "MessageDecoder",
    "Record",
    "RecordType",
    "encode_close",
    "encode_message",
]

MAX_MESSAGE: Final = 16 * 1024 * 1024
"""Largest record payload our peers accept (uvicorn's default WebSocket message limit)."""
MAX_CLOSE_REASON: Final = 123
"""Most bytes of a close reason (RFC 6455: a control frame carries at most 125 bytes)."""
CLOSE_NORMAL: Final = 1000
CLOSE_NO_STATUS: Final = 1005
"""Close code reported when the peer closed without one."""
CLOSE_ABNORMAL: Final = 1006
"""Close code reported when the connection was lost without a close."""
CLOSE_INTERNAL: Final = 1011
"""Close code sent to a client when the service failed or was lost."""

_PREFIX = struct.Struct(">BI")
_CODE = struct.Struct(">H")


class RecordType(IntEnum):
    """Record types (the first byte of a record)."""

    TEXT = 0x01
    BINARY = 0x02
    CLOSE = 0x08


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record: a message (``data`` is str or bytes) or a close."""

    type: RecordType
    data: str | bytes = b""
    code: int = CLOSE_NO_STATUS
    """CLOSE: the close code."""


def encode_message(data: str | bytes) -> bytes:
    """A TEXT record for a str, a BINARY record for bytes."""
    if isinstance(data, str):
        raw = data.encode()
        return _PREFIX.pack(RecordType.TEXT, len(raw)) + raw
    return _PREFIX.pack(RecordType.BINARY, len(data)) + bytes(data)


def encode_close(code: int, reason: str = "") -> bytes:
    """A CLOSE record; the reason is cut to 123 bytes at a character boundary."""
    if not 1000 <= code <= 4999:
        code = CLOSE_NORMAL if code < 1000 else CLOSE_INTERNAL
    raw = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore").encode()
    return _PREFIX.pack(RecordType.CLOSE, 2 + len(raw)) + _CODE.pack(code) + raw


class MessageDecoder:
    """Reassembles records from body chunks; raises :class:`StreamError` (502) on bad input."""

    __slots__ = ("_buffer", "closed", "max_message")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self.max_message = max_message
        self.closed = False
        """A CLOSE record was decoded (nothing may follow it)."""

    def feed(self, chunk: bytes) -> list[Record]:
        """The records completed by ``chunk`` (possibly none)."""
        buffer = self._buffer
        buffer += chunk
        records: list[Record] = []
        offset = 0
        while len(buffer) - offset >= _PREFIX.size:
            raw_type, size = _PREFIX.unpack_from(buffer, offset)
            if size > self.max_message:
                raise StreamError(ABORT_BAD_PEER, f"WebSocket message of {size} bytes is too big")
            end = offset + _PREFIX.size + size
            if len(buffer) < end:
                break
            payload = bytes(buffer[offset + _PREFIX.size : end])
            offset = end
            if self.closed:
                raise StreamError(ABORT_BAD_PEER, "WebSocket record after the close")
            records.append(_record(raw_type, payload))
            if records[-1].type is RecordType.CLOSE:
                self.closed = True
        del buffer[:offset]
        return records

    @property
    def pending(self) -> int:
        """Bytes of an incomplete record held."""
        return len(self._buffer)


def _record(raw_type: int, payload: bytes) -> Record:
    try:
        kind = RecordType(raw_type)
    except ValueError:
        raise StreamError(
            ABORT_BAD_PEER, f"unknown WebSocket record type {raw_type:#04x}"
        ) from None
    try:
        if kind is RecordType.TEXT:
            return Record(kind, payload.decode())
        if kind is RecordType.BINARY:
            return Record(kind, payload)
        if len(payload) < 2:
            raise StreamError(ABORT_BAD_PEER, "WebSocket CLOSE record without a code")
        return Record(kind, payload[2:].decode(), _CODE.unpack_from(payload)[0])
    except UnicodeDecodeError:
        raise StreamError(ABORT_BAD_PEER, "WebSocket text is not UTF-8") from None
