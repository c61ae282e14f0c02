"""Names and small pure helpers of the NATS side of the narun wire protocol.

The normative description is ``docs/protocol.md``. Everything that travels outside the
Binary HTTP message (or outside the raw protobuf message for gRPC) is a NATS header
named here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

__all__ = [
    "BHTTP_CONTENT_TYPE",
    "CLIENT_ADDR",
    "CONTENT_TYPE",
    "GRPC_DEADLINE_MS",
    "GRPC_INITIAL_METADATA",
    "GRPC_MESSAGE",
    "GRPC_METADATA",
    "GRPC_METHOD",
    "GRPC_NO_MESSAGE",
    "GRPC_SERVICE_ENDPOINT",
    "GRPC_STATUS",
    "GRPC_TRAILING_METADATA",
    "GRPC_UNARY",
    "HTTP_SERVICE_ENDPOINT",
    "OVERLOADED",
    "QUEUE_GROUP",
    "REQUEST_ID",
    "SERVICE_ERROR",
    "SERVICE_ERROR_CODE",
    "STREAM",
    "STREAM_CREDIT",
    "STREAM_IDLE_MS",
    "STREAM_METADATA",
    "TIMEOUT_MS",
    "WEBSOCKET_METADATA",
    "cancel_subject",
    "format_addr",
    "format_timeout",
    "from_narun_gateway",
    "parse_timeout",
    "parse_window",
    "stream_subject",
    "websocket_subject",
]

# Endpoint names and queue group, as Go narun registers them.
HTTP_SERVICE_ENDPOINT: Final = "handler"
GRPC_SERVICE_ENDPOINT: Final = "grpc_handler"
QUEUE_GROUP: Final = "q"

# Request headers (gateway -> consumer).
CONTENT_TYPE: Final = "Content-Type"
BHTTP_CONTENT_TYPE: Final = "application/bhttp"
GRPC_METHOD: Final = "X-Original-Grpc-Method"
REQUEST_ID: Final = "Narun-Request-Id"
CLIENT_ADDR: Final = "Narun-Client-Addr"
TIMEOUT_MS: Final = "Narun-Timeout-Ms"

# Reply header (consumer -> gateway): the instance refused the request unprocessed
# because it is at its concurrency and backlog limits; another instance may take it.
OVERLOADED: Final = "Narun-Overloaded"

# Streams (docs/protocol.md, *Streams*).
STREAM: Final = "Narun-Stream"
"""Request: the gateway reads streamed replies; value = its credit for the reply body."""
STREAM_CREDIT: Final = "Narun-Stream-Credit"
"""First message of a consumer in a stream: its credit for the request body (``0`` when
the body is not streamed). A header of its own, never ``Narun-Stream``: some clients
(nats-py's ``Msg.respond``) copy the request's headers into a plain reply."""
STREAM_IDLE_MS: Final = "Narun-Stream-Idle-Ms"
"""Request: the stream idle timeout in whole milliseconds."""
STREAM_METADATA: Final = "narun.stream"
"""Micro service metadata key a streaming consumer sets to ``"1"``."""


WEBSOCKET_METADATA: Final = "narun.websocket"
"""Micro service metadata key a consumer serving WebSockets sets to ``"1"``."""


def websocket_subject(service: str) -> str:
    """The subject of WebSocket openings (consumers that serve WebSockets only)."""
    return service + ".ws"


def stream_subject(service: str) -> str:
    """The subject of requests whose body is streamed (streaming consumers only)."""
    return service + ".stream"


def cancel_subject(service: str) -> str:
    """The subject on which a gateway cancels a request of ``service`` (every instance)."""
    return service + ".cancel"


def parse_window(value: str | None) -> int | None:
    """Decode a ``Narun-Stream`` credit value; None if absent or malformed."""
    if not value or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


# Reply headers (consumer -> gateway), ADR-32.
SERVICE_ERROR: Final = "Nats-Service-Error"
SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"


def format_addr(client: tuple[str, int] | list[object]) -> str:
    """A ``(host, port)`` client address as ``host:port`` (``[host]:port`` for IPv6).

    The form of ``Narun-Client-Addr`` and of the access log's ``client``.
    """
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def format_timeout(seconds: float) -> str:
    """Encode a remaining time budget as whole milliseconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds * 1000)))


def parse_timeout(value: str | None) -> float | None:
    """Decode a ``Narun-Timeout-Ms`` header into seconds; ``None`` if absent or malformed."""
    if not value or not value.isdigit():
        return None
    return int(value) / 1000.0


def from_narun_gateway(headers: Mapping[str, str] | None) -> bool:
    """Whether a request carries any ``Narun-*`` header, as every narun gateway's does.

    A Go narun gateway sends only ``Content-Type``, sets no deadline and reads no ADR-32
    error headers; a consumer answers such a request in Binary HTTP alone.
    """
    return bool(headers) and any(name[:6].lower() == "narun-" for name in headers or ())


# gRPC control headers (see docs/protocol.md; encoded by narun.protocol.grpcwire).
GRPC_METADATA: Final = "Narun-Grpc-Metadata"
"""Request: the call's forwarded metadata, ``key=value`` items separated by commas."""
GRPC_STATUS: Final = "Narun-Grpc-Status"
"""Reply: the decimal gRPC status code (0..16) the servicer ended the call with."""
GRPC_MESSAGE: Final = "Narun-Grpc-Message"
"""Reply: the status message (details), percent-encoded UTF-8."""
GRPC_INITIAL_METADATA: Final = "Narun-Grpc-Initial-Metadata"
"""Reply: initial (header) metadata the servicer sent, same encoding as the request's."""
GRPC_TRAILING_METADATA: Final = "Narun-Grpc-Trailing-Metadata"
"""Reply: trailing metadata the servicer set, same encoding as the request's."""
GRPC_DEADLINE_MS: Final = "Narun-Grpc-Deadline-Ms"
"""Request: the client's own deadline in ms (rounded up), when it set one; streamed calls
run under it instead of ``Narun-Timeout-Ms``."""
GRPC_NO_MESSAGE: Final = "Narun-Grpc-No-Message"
"""Request (``1``): the client half-closed without any request message; the payload is empty."""
GRPC_UNARY: Final = "Narun-Grpc-Unary"
"""Reply (``1``) to a request that offered a stream: the method is unary (one message each
way), so the gateway may serve its later calls without offering one."""
