"""Binary HTTP (RFC 9292) messages: a pure, allocation-lean encoder and decoder.

Requests and responses travel over NATS as ``message/bhttp`` bytes. This module turns
:class:`Request` and :class:`Response` values into those bytes and back, accepting both
the known-length and the indeterminate-length framing, truncated trailing sections and
zero padding; anything malformed raises :class:`~narun.errors.BinaryHTTPError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from narun.errors import BinaryHTTPError

__all__ = [
    "Headers",
    "InformationalResponse",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

Headers: TypeAlias = tuple[tuple[bytes, bytes], ...]
"""Field lines as ``(name, value)`` pairs, in wire order, repeats kept."""


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request: control data, header fields, content and trailer fields."""

    method: str
    """Request method, e.g. ``"POST"`` (ASCII)."""
    scheme: str
    """URI scheme, e.g. ``"https"``; may be empty (Go narun sends none)."""
    authority: str
    """Host and optional port; may be empty."""
    path: str
    """Path with query, e.g. ``"/hello/?a=1"``; may be empty. The bytes as sent, one
    character per byte (latin-1): a Go gateway passes raw UTF-8 in the query through
    (``/?q=caf\xc3\xa9``); every other control field is ASCII."""
    headers: Headers = ()
    """Header field lines, names as sent (narun sends lower-case names)."""
    content: bytes = b""
    """The request body."""
    trailers: Headers = ()
    """Trailer field lines."""


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """An interim (1xx) response that precedes the final one."""

    status: int
    """Status code, 100 to 199."""
    headers: Headers = ()
    """Header field lines of the interim response."""


@dataclass(frozen=True, slots=True)
class Response:
    """A final HTTP response, with any interim responses that came before it."""

    status: int
    """Final status code, 200 to 599."""
    headers: Headers = ()
    """Header field lines, names as sent (narun sends lower-case names)."""
    content: bytes = b""
    """The response body."""
    trailers: Headers = ()
    """Trailer field lines."""
    informational: tuple[InformationalResponse, ...] = ()
    """Interim responses, in the order they were sent."""


# ---------------------------------------------------------------------------- encoding

_V1: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(64))
_VARINT_MAX = (1 << 62) - 1


def _varint(n: int) -> bytes:
    """Shortest QUIC variable-length encoding of ``0 <= n < 2**62``."""
    if n < 64:
        return _V1[n]
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big")
    if n < 0x4000_0000:
        return (n | 0x8000_0000).to_bytes(4, "big")
    if n <= _VARINT_MAX:
        return (n | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise BinaryHTTPError(f"value {n} does not fit a variable-length integer")


def _lines(fields: Headers) -> bytes:
    """Field lines, each a length-prefixed name and a length-prefixed value."""
    if not fields:
        return b""
    v1 = _V1
    out: list[bytes] = []
    add = out.extend
    for name, value in fields:
        n = len(name)
        m = len(value)
        if 0 < n < 64 and m < 64:
            add((v1[n], name, v1[m], value))
        elif n:
            add((_varint(n), name, _varint(m), value))
        else:
            raise BinaryHTTPError("empty field name")
    return b"".join(out)


def _append_tail(
    parts: list[bytes], headers: Headers, content: bytes, trailers: Headers, indeterminate: bool
) -> bytes:
    """Add header section, content and trailer section to ``parts``; join them."""
    hs = _lines(headers)
    ts = _lines(trailers)
    n = len(content)
    if indeterminate:
        if n:
            parts += (hs, b"\x00", _varint(n), content, b"\x00", ts, b"\x00")
        else:
            parts += (hs, b"\x00\x00", ts, b"\x00")
    else:
        v1 = _V1
        a = len(hs)
        b = len(ts)
        parts += (
            v1[a] if a < 64 else _varint(a),
            hs,
            v1[n] if n < 64 else _varint(n),
            content,
            v1[b] if b < 64 else _varint(b),
            ts,
        )
    return b"".join(parts)


def encode_request(request: Request, *, indeterminate: bool = False) -> bytes:
    """Encode ``request``; known-length framing unless ``indeterminate`` is true."""
    try:
        control = (
            request.method.encode("ascii"),
            request.scheme.encode("ascii"),
            request.authority.encode("ascii"),
            request.path.encode("latin-1"),
        )
    except UnicodeEncodeError as exc:
        raise BinaryHTTPError(
            "request method, scheme and authority must be ASCII, the path bytes (latin-1)"
        ) from exc
    v1 = _V1
    parts = [b"\x02" if indeterminate else b"\x00"]
    for s in control:
        n = len(s)
        parts += (v1[n] if n < 64 else _varint(n), s)
    return _append_tail(parts, request.headers, request.content, request.trailers, indeterminate)


def encode_response(response: Response, *, indeterminate: bool = False) -> bytes:
    """Encode ``response``; known-length framing unless ``indeterminate`` is true."""
    status = response.status
    if not 200 <= status <= 599:
        raise BinaryHTTPError(f"final status {status} is outside 200..599")
    parts = [b"\x03" if indeterminate else b"\x01"]
    for info in response.informational:
        code = info.status
        if not 100 <= code <= 199:
            raise BinaryHTTPError(f"informational status {code} is outside 100..199")
        hs = _lines(info.headers)
        if indeterminate:
            parts += (_varint(code), hs, b"\x00")
        else:
            parts += (_varint(code), _varint(len(hs)), hs)
    parts.append(_varint(status))
    return _append_tail(parts, response.headers, response.content, response.trailers, indeterminate)


# ---------------------------------------------------------------------------- decoding
# Decoders index ``data`` directly: a read past the end raises IndexError and bad ASCII
# raises UnicodeDecodeError; the public functions turn both into BinaryHTTPError. Slices
# never raise, so every slice end is checked against the end of its enclosing region.


def _varint_at(data: bytes, i: int) -> tuple[int, int]:
    """Decode a 2, 4 or 8 byte variable-length integer at ``i``; return it and the end."""
    b = data[i]
    prefix = b >> 6
    if prefix == 1:
        return ((b & 0x3F) << 8) | data[i + 1], i + 2
    end = i + (4 if prefix == 2 else 8)
    if end > len(data):
        raise BinaryHTTPError("truncated variable-length integer")
    return int.from_bytes(data[i:end], "big") & (0x3FFF_FFFF if prefix == 2 else _VARINT_MAX), end


def _known_section(data: bytes, i: int, end: int) -> Headers:
    """Field lines filling exactly ``data[i:end]``."""
    out: list[tuple[bytes, bytes]] = []
    add = out.append
    while i < end:
        n = data[i]
        if n < 64:
            i += 1
        else:
            n, i = _varint_at(data, i)
        if not n:
            # Field names are tokens (RFC 9110): an empty one is malformed, and the
            # encoder could never produce it in indeterminate framing.
            raise BinaryHTTPError("empty field name")
        k = i + n
        name = data[i:k]
        m = data[k]
        if m < 64:
            k += 1
        else:
            m, k = _varint_at(data, k)
        i = k + m
        add((name, data[k:i]))
    if i != end:
        raise BinaryHTTPError("field line overruns its field section")
    return tuple(out)


def _open_section(data: bytes, i: int) -> tuple[Headers, int]:
    """Field lines up to a zero terminator at ``i``; return them and the end."""
    out: list[tuple[bytes, bytes]] = []
    add = out.append
    while True:
        n = data[i]
        if n < 64:
            i += 1
        else:
            n, i = _varint_at(data, i)
        if not n:
            return tuple(out), i
        k = i + n
        name = data[i:k]
        m = data[k]
        if m < 64:
            k += 1
        else:
            m, k = _varint_at(data, k)
        i = k + m
        if i > len(data):
            raise BinaryHTTPError("field value runs past the end of the message")
        add((name, data[k:i]))


def _tail(data: bytes, i: int, indeterminate: bool) -> tuple[Headers, bytes, Headers]:
    """Header section, content and trailer section from ``i``; then check the padding.

    The message may end before the header section, before the content, or before the
    trailer section; whatever is missing is empty.
    """
    ln = len(data)
    if i == ln:
        return (), b"", ()
    content = b""
    trailers: Headers = ()
    if indeterminate:
        headers, i = _open_section(data, i)
        if i == ln:
            return headers, content, trailers
        chunks: list[bytes] = []
        while True:
            n = data[i]
            if n < 64:
                i += 1
            else:
                n, i = _varint_at(data, i)
            if not n:
                break
            j = i + n
            if j > ln:
                raise BinaryHTTPError("content chunk runs past the end of the message")
            chunks.append(data[i:j])
            i = j
        if chunks:
            content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if i == ln:
            return headers, content, trailers
        trailers, i = _open_section(data, i)
    else:
        n = data[i]
        if n < 64:
            i += 1
        else:
            n, i = _varint_at(data, i)
        j = i + n
        if j > ln:
            raise BinaryHTTPError("header section runs past the end of the message")
        headers = _known_section(data, i, j) if n else ()
        i = j
        if i == ln:
            return headers, content, trailers
        n = data[i]
        if n < 64:
            i += 1
        else:
            n, i = _varint_at(data, i)
        j = i + n
        if j > ln:
            raise BinaryHTTPError("content runs past the end of the message")
        content = data[i:j]
        i = j
        if i == ln:
            return headers, content, trailers
        n = data[i]
        if n < 64:
            i += 1
        else:
            n, i = _varint_at(data, i)
        j = i + n
        if j > ln:
            raise BinaryHTTPError("trailer section runs past the end of the message")
        if n:
            trailers = _known_section(data, i, j)
        i = j
    if i != ln and data.count(0, i) != ln - i:
        raise BinaryHTTPError("non-zero bytes after the end of the message")
    return headers, content, trailers


def _framing(data: bytes) -> tuple[int, int]:
    """The framing indicator and the offset just past it."""
    f = data[0]
    if f < 64:
        return f, 1
    return _varint_at(data, 0)


def decode_request(data: bytes | bytearray | memoryview) -> Request:
    """Decode a request in either framing; raise BinaryHTTPError if malformed."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        f, i = _framing(data)
        if f != 0 and f != 2:
            raise BinaryHTTPError(f"framing indicator {f} is not a request")
        ln = len(data)
        control: list[str] = []
        for k in range(4):
            n = data[i]
            if n < 64:
                i += 1
            else:
                n, i = _varint_at(data, i)
            j = i + n
            if j > ln:
                raise BinaryHTTPError("request control data runs past the end")
            # The path is kept byte for byte (Go passes raw UTF-8 through); the method,
            # scheme and authority must be ASCII.
            control.append(data[i:j].decode("latin-1" if k == 3 else "ascii"))
            i = j
        headers, content, trailers = _tail(data, i, f == 2)
    except (IndexError, UnicodeDecodeError) as exc:
        raise BinaryHTTPError(f"malformed request: {exc}") from exc
    method, scheme, authority, path = control
    return Request(method, scheme, authority, path, headers, content, trailers)


def decode_response(data: bytes | bytearray | memoryview) -> Response:
    """Decode a response in either framing; raise BinaryHTTPError if malformed."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        f, i = _framing(data)
        if f != 1 and f != 3:
            raise BinaryHTTPError(f"framing indicator {f} is not a response")
        indeterminate = f == 3
        informational: list[InformationalResponse] = []
        while True:
            status = data[i]
            if status < 64:
                i += 1
            else:
                status, i = _varint_at(data, i)
            if 200 <= status <= 599:
                break
            if not 100 <= status <= 199:
                raise BinaryHTTPError(f"status {status} is outside 100..599")
            if indeterminate:
                hs, i = _open_section(data, i)
            else:
                n = data[i]
                if n < 64:
                    i += 1
                else:
                    n, i = _varint_at(data, i)
                j = i + n
                if j > len(data):
                    raise BinaryHTTPError("informational header section runs past the end")
                hs = _known_section(data, i, j)
                i = j
            informational.append(InformationalResponse(status, hs))
        headers, content, trailers = _tail(data, i, indeterminate)
    except (IndexError, UnicodeDecodeError) as exc:
        raise BinaryHTTPError(f"malformed response: {exc}") from exc
    return Response(status, headers, content, trailers, tuple(informational))
