"""The gRPC control data of the narun wire protocol, as pure functions over NATS headers.

A gRPC call crosses NATS as one request message (payload = the raw request message)
and one reply (payload = the raw response message). Everything else a gRPC call
carries - method, metadata, deadline, peer, status, initial and trailing metadata -
travels in NATS headers, which nats-py models as a dict with one single-line ASCII
value per name. This module turns that control data into header values and back.
The normative description is the "gRPC over NATS" section of ``docs/protocol.md``.

Encodings:

* **metadata** (``Narun-Grpc-Metadata``, ``Narun-Grpc-Initial-Metadata``,
  ``Narun-Grpc-Trailing-Metadata``): items ``key=value`` joined by ``,``, in order, a
  repeated key repeated. ``key`` is a lower-case gRPC metadata key. For ``-bin`` keys
  ``value`` is the unpadded standard base64 of the bytes; for other keys it is the
  percent-encoded UTF-8 of the text (see :func:`encode_text`).
* **status** (``Narun-Grpc-Status``): the decimal code, 0 to 16.
* **message** (``Narun-Grpc-Message``): percent-encoded UTF-8.

Status codes are :class:`StatusCode`, an ``IntEnum`` with grpcio's names (``grpc.StatusCode``
lives in grpcio, which this module does not need). No I/O, no event loop.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

from narun.errors import NarunError
from narun.protocol import wire

__all__ = [
    "GRPCRequest",
    "GRPCStatus",
    "GRPCWireError",
    "Metadata",
    "Metadatum",
    "StatusCode",
    "code_name",
    "decode_metadata",
    "decode_reply",
    "decode_request",
    "decode_text",
    "encode_metadata",
    "encode_reply",
    "encode_request",
    "encode_text",
    "forwardable",
    "is_reserved_key",
    "peer_address",
    "peer_from_address",
    "split_method",
]


class StatusCode(IntEnum):
    """A gRPC status code, named as in grpcio (``StatusCode.UNAVAILABLE == 14``).

    ``grpc.StatusCode[code.name]`` is grpcio's member for it; ``str(code)`` is the
    decimal number, as ``Narun-Grpc-Status`` carries it.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def parse(cls, value: str) -> StatusCode | None:
        """The code a decimal header value names (``"14"``, ``"04"``); ``None`` if none."""
        return _BY_DECIMAL.get(value)


# Every way a header may write a code: "0".."16" and the two-digit "00".."09". A dict
# lookup, since StatusCode(int(value)) costs a microsecond on the hot path.
_BY_DECIMAL = {
    **{str(code.value): code for code in StatusCode},
    **{f"{code.value:02d}": code for code in StatusCode},
}
_NAMES = tuple(code.name for code in StatusCode)


# Keys a gateway never forwards and never sends back to a client: HTTP/2 pseudo-headers
# (":path"), gRPC's reserved "grpc-*" keys, and connection-level HTTP fields.
_RESERVED = frozenset(
    {
        "connection",
        "content-type",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_KEY = re.compile(r"[0-9a-z_.\-]+")
_TEXT_VALUE = re.compile(r"[\x20-\x7e]*")
# Printable ASCII except space, '%' and ',' stays as is; every other byte is %XX.
_LITERAL = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%,")
_ENCODED = re.compile(r"(?:[\x21-\x24\x26-\x2b\x2d-\x7e]|%[0-9A-Fa-f]{2})*")
_PLAIN = re.compile(r"[\x21-\x24\x26-\x2b\x2d-\x7e]*")
"""Text that :func:`encode_text` keeps as it is (and :func:`decode_text` therefore too)."""
_TEXT_CACHE = 256
"""Short texts whose percent-encoding is kept (values such as ``user-agent`` repeat on
every call)."""
_SHORT_TEXT = 256
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# Generic texts for ADR-32 error codes that are not gRPC codes (a Go narun consumer
# answers 400, 500 or 501): the text such a consumer sent is logged, never forwarded.
_GO_ERRORS = {
    "501": (StatusCode.UNIMPLEMENTED, "Method not implemented by the backend service"),
    "500": (StatusCode.UNKNOWN, "Backend service error"),
}
_OTHER_ERROR = (StatusCode.INTERNAL, "Backend service error")


class GRPCWireError(NarunError, ValueError):
    """A gRPC control header that does not follow the protocol (the sender's fault)."""

    grpc_code = "INTERNAL"
    public_message = "Bad reply from backend service"


class Metadatum(NamedTuple):
    """One metadata item, shaped like grpcio's: ``str`` value, ``bytes`` for ``-bin``."""

    key: str
    value: str | bytes


Metadata = tuple[Metadatum, ...]
"""Metadata items in order; a key may repeat."""


def code_name(code: int) -> str:
    """The name of a status code given as an int (``14`` -> ``"UNAVAILABLE"``).

    Unknown numbers give ``"UNKNOWN"``. Same as ``StatusCode(code).name`` for a valid
    code, at a tenth of the cost (enum attributes are slow on Python 3.11): for the
    per-call metric labels and log lines.
    """
    return _NAMES[code] if 0 <= code < len(_NAMES) else "UNKNOWN"


# --- text and metadata ---------------------------------------------------------------


def encode_text(text: str | bytes) -> str:
    """Percent-encode text (as UTF-8) or bytes into one header-safe ASCII token.

    Bytes 0x21..0x7E other than ``%`` and ``,`` are kept; every other byte, space
    included, becomes ``%XX`` (upper-case hex).
    """
    if isinstance(text, bytes):
        return quote(text, safe=_LITERAL)
    if _PLAIN.fullmatch(text):
        return text
    return _encode_short(text) if len(text) <= _SHORT_TEXT else _encode_str(text)


def _encode_str(text: str) -> str:
    return quote(text.encode("utf-8"), safe=_LITERAL)


_encode_short = functools.lru_cache(maxsize=_TEXT_CACHE)(_encode_str)


def decode_text(value: str) -> str:
    """Inverse of :func:`encode_text` for UTF-8 text. Raises :class:`GRPCWireError`."""
    if _PLAIN.fullmatch(value):
        return value
    return _decode_short(value) if len(value) <= _SHORT_TEXT else _decode_escaped(value)


def _decode_escaped(value: str) -> str:
    if not _ENCODED.fullmatch(value):
        raise GRPCWireError(f"bad percent-encoding: {value[:80]!r}")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise GRPCWireError(f"not UTF-8 once decoded: {value[:80]!r}") from None


_decode_short = functools.lru_cache(maxsize=_TEXT_CACHE)(_decode_escaped)


def is_reserved_key(key: str) -> bool:
    """True for keys that only the transport may set: ``:*``, ``grpc-*``, hop-by-hop."""
    return key.startswith((":", "grpc-")) or key in _RESERVED


def forwardable(metadata: Iterable[tuple[str, str | bytes]]) -> Metadata:
    """The items of ``metadata`` that may cross a gateway, as :class:`Metadatum`.

    Drops reserved keys (:func:`is_reserved_key`), keys that are not valid gRPC keys,
    non-``-bin`` values that are not printable ASCII, and values of the wrong type.
    ``user-agent`` is kept.
    """
    out: list[Metadatum] = []
    for key, value in metadata:
        if is_reserved_key(key) or not _KEY.fullmatch(key):
            continue
        if key.endswith("-bin"):
            if isinstance(value, bytes):
                out.append(Metadatum(key, value))
        elif isinstance(value, str) and _TEXT_VALUE.fullmatch(value):
            out.append(Metadatum(key, value))
    return tuple(out)


def encode_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """Encode metadata items into one header value (``""`` for none).

    Keys are lower-cased and must then be valid gRPC keys (``[0-9a-z_.-]+``), else
    ``ValueError``. ``-bin`` values are base64 (``str`` values are taken as UTF-8);
    other values are percent-encoded text (``bytes`` values are taken as they are).
    """
    items: list[str] = []
    for key, value in metadata:
        key = key.lower()
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid gRPC metadata key {key!r}")
        if key.endswith("-bin"):
            raw = value.encode("utf-8") if isinstance(value, str) else value
            items.append(f"{key}={base64.b64encode(raw).decode('ascii').rstrip('=')}")
        else:
            items.append(f"{key}={encode_text(value)}")
    return ",".join(items)


def decode_metadata(value: str) -> Metadata:
    """Decode a metadata header value (see :func:`encode_metadata`).

    ``-bin`` values come back as ``bytes`` (padded or unpadded base64 accepted), others
    as ``str``. Raises :class:`GRPCWireError` on anything malformed.
    """
    if not value:
        return ()
    out: list[Metadatum] = []
    for item in value.split(","):
        key, sep, encoded = item.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise GRPCWireError(f"bad metadata item {item[:80]!r}")
        if key.endswith("-bin"):
            if not _BASE64.fullmatch(encoded) or len(encoded.rstrip("=")) % 4 == 1:
                raise GRPCWireError(f"bad base64 in metadata item {key!r}")
            stripped = encoded.rstrip("=")
            try:
                raw = base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
            except binascii.Error:
                raise GRPCWireError(f"bad base64 in metadata item {key!r}") from None
            out.append(Metadatum(key, raw))
        else:
            out.append(Metadatum(key, decode_text(encoded)))
    return tuple(out)


# --- requests (gateway -> consumer) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class GRPCRequest:
    """The control data of one gRPC call, as the consumer reads it from NATS headers."""

    method: str | None
    """``/pkg.Service/Method``; ``None`` when ``X-Original-Grpc-Method`` is missing."""
    metadata: Metadata = ()
    """The client's metadata, as forwarded by the gateway."""
    timeout: float | None = None
    """Seconds left of the call's budget when the gateway sent it; ``None`` = unbounded."""
    client_addr: str | None = None
    """The client's ``host:port`` (``[v6]:port``), if the gateway knew it."""
    request_id: str | None = None
    """The call's ID (``Narun-Request-Id``), if the gateway sent one."""


def encode_request(
    *,
    method: str,
    metadata: Iterable[tuple[str, str | bytes]] = (),
    timeout: float | None = None,
    client_addr: str | None = None,
    request_id: str | None = None,
) -> dict[str, str]:
    """NATS headers of a gRPC request. ``metadata`` should already be :func:`forwardable`."""
    headers = {wire.GRPC_METHOD: method}
    if request_id:
        headers[wire.REQUEST_ID] = request_id
    if timeout is not None:
        headers[wire.TIMEOUT_MS] = wire.format_timeout(timeout)
    if client_addr:
        headers[wire.CLIENT_ADDR] = client_addr
    encoded = encode_metadata(metadata)
    if encoded:
        headers[wire.GRPC_METADATA] = encoded
    return headers


def decode_request(headers: Mapping[str, str] | None) -> GRPCRequest:
    """Read a gRPC request's control data. Raises :class:`GRPCWireError` on bad metadata."""
    if not headers:
        return GRPCRequest(method=None)
    return GRPCRequest(
        method=headers.get(wire.GRPC_METHOD) or None,
        metadata=decode_metadata(headers.get(wire.GRPC_METADATA, "")),
        timeout=wire.parse_timeout(headers.get(wire.TIMEOUT_MS)),
        client_addr=headers.get(wire.CLIENT_ADDR) or None,
        request_id=headers.get(wire.REQUEST_ID) or None,
    )


# --- replies (consumer -> gateway) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class GRPCStatus:
    """How a call ended: status code and message, plus the servicer's metadata."""

    code: StatusCode = StatusCode.OK
    """gRPC status code."""
    message: str = ""
    """Status message (``details`` in grpcio); empty for OK."""
    initial_metadata: Metadata = ()
    """Metadata sent before the response (``context.send_initial_metadata``)."""
    trailing_metadata: Metadata = ()
    """Metadata sent with the status (``context.set_trailing_metadata``)."""


def encode_reply(status: GRPCStatus) -> dict[str, str]:
    """NATS headers of a Python consumer's reply.

    Always carries ``Narun-Grpc-Status``. A non-OK status also sets the ADR-32 error
    headers (generic text, decimal gRPC code) so that NATS Micro counts the error and
    Go tools see one; the real message is only in ``Narun-Grpc-Message``.
    """
    headers = {wire.GRPC_STATUS: str(status.code)}
    if status.message:
        headers[wire.GRPC_MESSAGE] = encode_text(status.message)
    if status.initial_metadata:
        headers[wire.GRPC_INITIAL_METADATA] = encode_metadata(status.initial_metadata)
    if status.trailing_metadata:
        headers[wire.GRPC_TRAILING_METADATA] = encode_metadata(status.trailing_metadata)
    if status.code != StatusCode.OK:
        headers[wire.SERVICE_ERROR] = f"gRPC status {code_name(status.code)}"
        headers[wire.SERVICE_ERROR_CODE] = str(status.code)
    return headers


def decode_reply(headers: Mapping[str, str] | None) -> GRPCStatus:
    """Read how a call ended from a consumer's reply headers.

    A Python consumer's ``Narun-Grpc-*`` headers win. Otherwise an ADR-32 error (a Go
    consumer's) maps as: a decimal gRPC code 1..16 to itself with ``Nats-Service-Error``
    as message; ``501`` to UNIMPLEMENTED, ``500`` to UNKNOWN, anything else to INTERNAL,
    these three with a generic message. No error header means OK. Raises
    :class:`GRPCWireError` when a ``Narun-Grpc-*`` header is malformed.
    """
    if not headers:
        return GRPCStatus()
    status = headers.get(wire.GRPC_STATUS)
    initial = decode_metadata(headers.get(wire.GRPC_INITIAL_METADATA, ""))
    trailing = decode_metadata(headers.get(wire.GRPC_TRAILING_METADATA, ""))
    if status is not None:
        code = StatusCode.parse(status)
        if code is None:
            raise GRPCWireError(f"bad {wire.GRPC_STATUS} {status[:20]!r}")
        message = decode_text(headers.get(wire.GRPC_MESSAGE, ""))
        return GRPCStatus(code, message if code != StatusCode.OK else "", initial, trailing)
    if wire.SERVICE_ERROR_CODE in headers or wire.SERVICE_ERROR in headers:
        raw = headers.get(wire.SERVICE_ERROR_CODE, "").strip()
        code = StatusCode.parse(raw)
        if code is not None and code != StatusCode.OK:
            return GRPCStatus(code, headers.get(wire.SERVICE_ERROR, ""), initial, trailing)
        code, message = _GO_ERRORS.get(raw, _OTHER_ERROR)
        return GRPCStatus(code, message, initial, trailing)
    return GRPCStatus(StatusCode.OK, "", initial, trailing)


# --- names and addresses -------------------------------------------------------------


def split_method(method: str) -> tuple[str, str] | None:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``; ``None`` if malformed."""
    if not method.startswith("/"):
        return None
    service, sep, name = method[1:].partition("/")
    if not sep or not service or not name or "/" in name:
        return None
    return service, name


def peer_address(peer: str) -> str | None:
    """A grpcio peer string (``ipv4:1.2.3.4:5``, ``ipv6:%5B::1%5D:5``) as ``host:port``.

    grpcio gives peers as URIs, so an IPv6 address comes with its brackets
    percent-encoded (``%5B::1%5D``); the result has them plain (``[::1]:5``).
    ``None`` for peers without an IP address (``unix:...``) or unknown forms.
    """
    kind, sep, addr = peer.partition(":")
    if sep and kind in ("ipv4", "ipv6") and addr:
        return unquote(addr) if "%" in addr else addr
    return None


def peer_from_address(addr: str | None) -> str:
    """The grpcio peer string for a ``host:port`` (inverse of :func:`peer_address`).

    Written as grpcio writes it, IPv6 brackets percent-encoded: ``ipv6:%5B::1%5D:5``.
    """
    if not addr:
        return "unknown"
    if addr.startswith("["):
        return "ipv6:" + addr.replace("%", "%25").replace("[", "%5B").replace("]", "%5D")
    return f"ipv4:{addr}"
