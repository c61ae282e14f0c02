"""Binary HTTP messages shaped as Go narun writes them (its BHTTP library's defaults).

Built byte by byte here, independently of ``narun.protocol.bhttp``, so that tests can
play a Go gateway or a Go consumer. ``tests/protocol/test_go_vectors.py`` pins these
builders to literal golden vectors.

What Go does (openpcc/bhttp zero-value encoders, as used by narun-gw and nconsumer):

- field names lower-case and sorted by name; lengths as the shortest varint;
- requests: known-length framing (0) when the length is known, with a ``content-length``
  line when the body is not empty or the method is POST, PUT or PATCH; indeterminate
  framing (2) for a chunked (unknown-length) body, chunks of at most 4094 bytes, no
  ``content-length`` line; an empty scheme; the trailer section always present;
- responses: an empty body is known-length (1) with ``content-length: 0``; any other
  body is indeterminate (3): a first chunk of 1 byte (the library probes one byte to
  tell an empty body), then chunks of at most 4094 bytes, then the empty trailer section.
"""

from __future__ import annotations

from collections.abc import Sequence

Fields = Sequence[tuple[bytes, bytes]]

GO_CHUNK = 4094
"""Largest data chunk Go writes: 4096 bytes with its 2-byte length prefix."""


def varint(n: int) -> bytes:
    """Shortest QUIC variable-length integer (RFC 9000 section 16)."""
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big")
    if n < 0x4000_0000:
        return (n | 0x8000_0000).to_bytes(4, "big")
    return (n | 0xC000_0000_0000_0000).to_bytes(8, "big")


def _string(s: bytes) -> bytes:
    return varint(len(s)) + s


def _lines(fields: Fields) -> bytes:
    return b"".join(_string(k) + _string(v) for k, v in sorted(fields))


def _chunks(body: bytes, first: int | None = None) -> bytes:
    out = b""
    i = 0
    if first is not None and body:
        out += _string(body[:first])
        i = first
    while i < len(body):
        piece = body[i : i + GO_CHUNK]
        out += _string(piece)
        i += len(piece)
    return out + b"\x00"


def request(
    method: bytes,
    authority: bytes,
    path: bytes,
    fields: Fields = (),
    body: bytes = b"",
    *,
    chunked: bool = False,
) -> bytes:
    """A request as a Go gateway forwards it (``chunked``: the client sent no length)."""
    control = _string(method) + _string(b"") + _string(authority) + _string(path)
    fields = [(k.lower(), v) for k, v in fields]
    if chunked:
        return b"\x02" + control + _lines(fields) + b"\x00" + _chunks(body) + b"\x00"
    if body or method in (b"POST", b"PUT", b"PATCH"):
        fields.append((b"content-length", str(len(body)).encode()))
    section = _lines(fields)
    return b"\x00" + control + _string(section) + _string(body) + b"\x00"


def response(status: int, fields: Fields = (), body: bytes = b"") -> bytes:
    """A response as a Go consumer replies (what its handler wrote, even on 204/304)."""
    fields = [(k.lower(), v) for k, v in fields if k.lower() != b"content-length"]
    if not body:
        section = _lines([*fields, (b"content-length", b"0")])
        return b"\x01" + varint(status) + _string(section) + b"\x00" + b"\x00"
    return b"\x03" + varint(status) + _lines(fields) + b"\x00" + _chunks(body, 1) + b"\x00"
