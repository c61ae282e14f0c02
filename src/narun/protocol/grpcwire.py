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

Status codes are plain ints here (``grpc.StatusCode`` lives in grpcio, which this
module does not need). No I/O, no event loop.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

from narun.errors import NarunError
from narun.protocol import wire

__all__ = [
    "CODE_NAMES",
    "GrpcRequest",
    "GrpcStatus",
    "GrpcWireError",
    "Metadata",
    "Metadatum",
    "code_name",
    "code_value",
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

CODE_NAMES: tuple[str, ...] = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status code names, indexed by code (``CODE_NAMES[14] == "UNAVAILABLE"``)."""

_CODES = {name: code for code, name in enumerate(CODE_NAMES)}
OK, UNKNOWN, UNIMPLEMENTED, INTERNAL = 0, 2, 12, 13

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
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# Generic texts for ADR-32 error codes that are not gRPC codes (a Go narun consumer
# answers 400, 500 or 501): the text such a consumer sent is logged, never forwarded.
_GO_ERRORS = {
    "501": (UNIMPLEMENTED, "Method not implemented by the backend service"),
    "500": (UNKNOWN, "Backend service error"),
}
_OTHER_ERROR = (INTERNAL, "Backend service error")


class GrpcWireError(NarunError, ValueError):
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
    """The name of a gRPC status code (``14`` -> ``"UNAVAILABLE"``); unknown -> ``UNKNOWN``."""
    return CODE_NAMES[code] if 0 <= code < len(CODE_NAMES) else "UNKNOWN"


def code_value(name: str) -> int:
    """The number of a gRPC status code name (``"UNAVAILABLE"`` -> ``14``)."""
    return _CODES[name]


# --- text and metadata ---------------------------------------------------------------


def encode_text(text: str | bytes) -> str:
    """Percent-encode text (as UTF-8) or bytes into one header-safe ASCII token.

    Bytes 0x21..0x7E other than ``%`` and ``,`` are kept; every other byte, space
    included, becomes ``%XX`` (upper-case hex).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    return quote(data, safe=_LITERAL)


def decode_text(value: str) -> str:
    """Inverse of :func:`encode_text` for UTF-8 text. Raises :class:`GrpcWireError`."""
    if not _ENCODED.fullmatch(value):
        raise GrpcWireError(f"bad percent-encoding: {value[:80]!r}")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise GrpcWireError(f"not UTF-8 once decoded: {value[:80]!r}") from None


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
    as ``str``. Raises :class:`GrpcWireError` on anything malformed.
    """
    if not value:
        return ()
    out: list[Metadatum] = []
    for item in value.split(","):
        key, sep, encoded = item.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise GrpcWireError(f"bad metadata item {item[:80]!r}")
        if key.endswith("-bin"):
            if not _BASE64.fullmatch(encoded) or len(encoded.rstrip("=")) % 4 == 1:
                raise GrpcWireError(f"bad base64 in metadata item {key!r}")
            stripped = encoded.rstrip("=")
            try:
                raw = base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
            except binascii.Error:
                raise GrpcWireError(f"bad base64 in metadata item {key!r}") from None
            out.append(Metadatum(key, raw))
        else:
            out.append(Metadatum(key, decode_text(encoded)))
    return tuple(out)


# --- requests (gateway -> consumer) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcRequest:
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


def decode_request(headers: Mapping[str, str] | None) -> GrpcRequest:
    """Read a gRPC request's control data. Raises :class:`GrpcWireError` on bad metadata."""
    if not headers:
        return GrpcRequest(method=None)
    return GrpcRequest(
        method=headers.get(wire.GRPC_METHOD) or None,
        metadata=decode_metadata(headers.get(wire.GRPC_METADATA, "")),
        timeout=wire.parse_timeout(headers.get(wire.TIMEOUT_MS)),
        client_addr=headers.get(wire.CLIENT_ADDR) or None,
        request_id=headers.get(wire.REQUEST_ID) or None,
    )


# --- replies (consumer -> gateway) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcStatus:
    """How a call ended: status code and message, plus the servicer's metadata."""

    code: int = OK
    """gRPC status code, 0 (OK) to 16."""
    message: str = ""
    """Status message (``details`` in grpcio); empty for OK."""
    initial_metadata: Metadata = ()
    """Metadata sent before the response (``context.send_initial_metadata``)."""
    trailing_metadata: Metadata = ()
    """Metadata sent with the status (``context.set_trailing_metadata``)."""


def encode_reply(status: GrpcStatus) -> dict[str, str]:
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
    if status.code != OK:
        headers[wire.SERVICE_ERROR] = f"gRPC status {code_name(status.code)}"
        headers[wire.SERVICE_ERROR_CODE] = str(status.code)
    return headers


def _parse_code(value: str) -> int | None:
    if value.isdigit() and len(value) <= 2 and int(value) < len(CODE_NAMES):
        return int(value)
    return None


def decode_reply(headers: Mapping[str, str] | None) -> GrpcStatus:
    """Read how a call ended from a consumer's reply headers.

    A Python consumer's ``Narun-Grpc-*`` headers win. Otherwise an ADR-32 error (a Go
    consumer's) maps as: a decimal gRPC code 1..16 to itself with ``Nats-Service-Error``
    as message; ``501`` to UNIMPLEMENTED, ``500`` to UNKNOWN, anything else to INTERNAL,
    these three with a generic message. No error header means OK. Raises
    :class:`GrpcWireError` when a ``Narun-Grpc-*`` header is malformed.
    """
    if not headers:
        return GrpcStatus()
    status = headers.get(wire.GRPC_STATUS)
    initial = decode_metadata(headers.get(wire.GRPC_INITIAL_METADATA, ""))
    trailing = decode_metadata(headers.get(wire.GRPC_TRAILING_METADATA, ""))
    if status is not None:
        code = _parse_code(status)
        if code is None:
            raise GrpcWireError(f"bad {wire.GRPC_STATUS} {status[:20]!r}")
        message = decode_text(headers.get(wire.GRPC_MESSAGE, ""))
        return GrpcStatus(code, message if code != OK else "", initial, trailing)
    if wire.SERVICE_ERROR_CODE in headers or wire.SERVICE_ERROR in headers:
        raw = headers.get(wire.SERVICE_ERROR_CODE, "").strip()
        code = _parse_code(raw)
        if code is not None and code != OK:
            return GrpcStatus(code, headers.get(wire.SERVICE_ERROR, ""), initial, trailing)
        code, message = _GO_ERRORS.get(raw, _OTHER_ERROR)
        return GrpcStatus(code, message, initial, trailing)
    return GrpcStatus(OK, "", initial, trailing)


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
