"""gRPC messages and status inside a stream, as pure code (docs/protocol.md, *gRPC streams*).

A streamed gRPC call uses the stream frames of :mod:`narun.protocol.stream` unchanged.
Its bodies are sequences of *records*, each one byte of flags, a 4-byte big-endian
length and that many bytes (gRPC's own length-prefixed message). Flags ``0x00`` is a
message; ``0x80`` (consumer to gateway only, last) is the trailer: the call's status and
trailing metadata. The HEAD carries the initial metadata. Both header-like blocks are
written as ``Name: value`` lines (CRLF), with the header names and value encodings of
the unary reply (:func:`narun.protocol.grpcwire.encode_reply`).

:class:`RecordReader` cuts records out of body chunks as they arrive, whatever the
chunk boundaries.
"""

from __future__ import annotations

import struct
from typing import Final

from narun.protocol import grpcwire, wire
from narun.protocol.grpcwire import GRPCStatus, GRPCWireError, Metadata, StatusCode

__all__ = [
    "MESSAGE",
    "TRAILER",
    "RecordReader",
    "decode_block",
    "decode_head",
    "decode_trailer",
    "encode_block",
    "encode_head",
    "encode_record",
    "encode_trailer",
]

MESSAGE: Final = 0x00
"""Record flags of a message."""
TRAILER: Final = 0x80
"""Record flags of the trailer (status and trailing metadata)."""
MAX_RECORD: Final = 64 * 1024 * 1024
"""Largest record accepted (a message this large is refused as malformed)."""

_PREFIX = struct.Struct(">BI")


def encode_record(data: bytes, flags: int = MESSAGE) -> bytes:
    """One record: flags, length, ``data``."""
    return _PREFIX.pack(flags, len(data)) + data


def encode_block(headers: dict[str, str]) -> bytes:
    """``Name: value`` lines (CRLF). Values must be printable ASCII (grpcwire's are)."""
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("ascii")


def decode_block(data: bytes) -> dict[str, str]:
    """Inverse of :func:`encode_block`; :class:`GRPCWireError` when malformed."""
    headers: dict[str, str] = {}
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise GRPCWireError("header block is not ASCII") from None
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name:
            raise GRPCWireError(f"bad header line {line[:40]!r}")
        headers[name] = value.strip()
    return headers


def encode_head(initial_metadata: Metadata) -> bytes:
    """The HEAD body of a gRPC stream: the initial metadata (empty when there is none)."""
    if not initial_metadata:
        return b""
    return encode_block({wire.GRPC_INITIAL_METADATA: grpcwire.encode_metadata(initial_metadata)})


def decode_head(data: bytes) -> Metadata:
    """The initial metadata of a HEAD body; :class:`GRPCWireError` when malformed."""
    if not data:
        return ()
    return grpcwire.decode_metadata(decode_block(data).get(wire.GRPC_INITIAL_METADATA, ""))


def encode_trailer(status: GRPCStatus) -> bytes:
    """The trailer record of ``status`` (its initial metadata is not repeated)."""
    headers = {wire.GRPC_STATUS: str(int(status.code))}
    if status.message and status.code != StatusCode.OK:
        headers[wire.GRPC_MESSAGE] = grpcwire.encode_text(status.message)
    if status.trailing_metadata:
        headers[wire.GRPC_TRAILING_METADATA] = grpcwire.encode_metadata(status.trailing_metadata)
    return encode_record(encode_block(headers), TRAILER)


def decode_trailer(data: bytes) -> GRPCStatus:
    """The status in a trailer record's content; :class:`GRPCWireError` when malformed."""
    headers = decode_block(data)
    if wire.GRPC_STATUS not in headers:
        raise GRPCWireError(f"trailer without {wire.GRPC_STATUS}")
    return grpcwire.decode_reply(headers)


class RecordReader:
    """Cuts records out of a byte stream fed in pieces.

    :meth:`feed` takes a chunk and returns the complete records it finished, as
    ``(flags, data)`` pairs. :class:`GRPCWireError` for unknown flags or a record over
    :data:`MAX_RECORD`; :attr:`pending` tells whether a record is cut short.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> bool:
        """Bytes of an incomplete record are buffered."""
        return bool(self._buf)

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """Add ``chunk``; return the records now complete, in order."""
        buf = self._buf
        buf += chunk
        out: list[tuple[int, bytes]] = []
        start = 0
        size = _PREFIX.size
        while len(buf) - start >= size:
            flags, length = _PREFIX.unpack_from(buf, start)
            if flags not in (MESSAGE, TRAILER):
                raise GRPCWireError(f"unknown record flags {flags:#04x}")
            if length > MAX_RECORD:
                raise GRPCWireError(f"record of {length} bytes is too large")
            end = start + size + length
            if len(buf) < end:
                break
            out.append((flags, bytes(buf[start + size : end])))
            start = end
        if start:
            del buf[:start]
        return out
