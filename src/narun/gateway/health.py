"""The standard gRPC health service (``grpc.health.v1.Health``) of the gRPC gateway.

``Check`` answers SERVING while the gateway can forward calls (connected to NATS, not
shutting down) and NOT_SERVING otherwise, for the whole server (``service: ""``) and for
every routed gRPC service; another service name is NOT_FOUND. ``Watch`` streams the
same status at once and again whenever it changes (looked at every half second); an
unknown service gets SERVICE_UNKNOWN, as the gRPC health protocol asks, and the stream
stays open until the client ends it.

The two messages are tiny (``HealthCheckRequest{string service = 1}``,
``HealthCheckResponse{ServingStatus status = 1}``), so they are read and written here by
hand, without protobuf classes. A configured route for ``grpc.health.v1.Health`` wins:
the calls are then forwarded like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Container

import grpc
import grpc.aio

__all__ = [
    "CHECK",
    "NOT_SERVING",
    "SERVICE",
    "SERVICE_UNKNOWN",
    "SERVING",
    "WATCH",
    "check_handler",
    "decode_check_request",
    "encode_check_response",
    "watch_handler",
]

SERVICE = "grpc.health.v1.Health"
CHECK = f"/{SERVICE}/Check"
WATCH = f"/{SERVICE}/Watch"
SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3
WATCH_INTERVAL = 0.5
"""Seconds between two looks at the gateway's readiness for ``Watch``."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_check_request(data: bytes) -> str:
    """The ``service`` of a serialized ``HealthCheckRequest``. ``ValueError`` if malformed."""
    service = ""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, kind = key >> 3, key & 7
        if kind == 0:
            _, pos = _varint(data, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            if field == 1:
                service = data[pos : pos + size].decode("utf-8")
            pos += size
        else:
            raise ValueError(f"unsupported wire type {kind}")
        if pos > len(data):
            raise ValueError("truncated field")
    return service


def encode_check_response(status: int) -> bytes:
    """A serialized ``HealthCheckResponse`` with ``status`` (1 SERVING, 2 NOT_SERVING)."""
    return bytes((0x08, status))


def check_handler(
    is_ready: Callable[[], tuple[bool, str]], services: Container[str]
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """The handler of ``Check``: ``services`` are the names answered besides ``""``."""

    async def check(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            service = decode_check_request(request)
        except (ValueError, UnicodeDecodeError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed HealthCheckRequest")
        if service and service not in services:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service}")
        return encode_check_response(SERVING if is_ready()[0] else NOT_SERVING)

    return grpc.unary_unary_rpc_method_handler(
        check, request_deserializer=None, response_serializer=None
    )


def watch_handler(
    is_ready: Callable[[], tuple[bool, str]], services: Container[str]
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """The handler of ``Watch``: the status now, then each change, until the client ends."""

    async def watch(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        try:
            service = decode_check_request(request)
        except (ValueError, UnicodeDecodeError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed HealthCheckRequest")
        if service and service not in services:
            yield encode_check_response(SERVICE_UNKNOWN)
            await asyncio.Event().wait()  # until the client goes (the task is cancelled)
        last = 0
        while True:
            status = SERVING if is_ready()[0] else NOT_SERVING
            if status != last:
                yield encode_check_response(status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL)

    return grpc.unary_stream_rpc_method_handler(
        watch, request_deserializer=None, response_serializer=None
    )
