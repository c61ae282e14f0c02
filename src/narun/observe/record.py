"""One request's record: request ID, in-flight count, span, metrics and access line.

Every handler keeps the same books for each request it serves: it takes the request's
ID and makes it :data:`narun.observe.requestid.current`, counts the request in flight,
opens a span when tracing is on, and at the end records the metrics, ends the span and
writes the access line. A :class:`Record` does all of it in that one order; its kinds
say what differs between the handlers (which metric, which span attributes, which log
line):

=========================  ==========================================================
:class:`GatewayHttpRecord`  an HTTP request at the gateway (also the edge's refusals)
:class:`GatewayGrpcRecord`  a gRPC call at the gateway
:class:`ConsumerHttpRecord` a Binary HTTP request at an HTTP consumer
:class:`ConsumerGrpcRecord` a gRPC call at a gRPC consumer
=========================  ==========================================================

Unary requests: the hot path stays flat, two plain calls and no context manager, no
extra task, no closure::

    record = GatewayHttpRecord(scope, metrics, tracer)    # the clock starts here
    try:
        record.status = await serve(...)                  # the handler fills in fields
    finally:
        record.end()

Streams (server-sent events, bodies in pieces, gRPC streams, WebSockets) use the same
record; what changes is when it ends and what it counts:

- start it when the stream opens (the request arrives), in the task that serves the
  stream, and call :meth:`Record.end` in that task when the stream is over: the last
  piece has gone, the peer went away, or it failed (a ``finally`` around the pump).
  The duration is then the stream's lifetime and the in-flight gauge counts the open
  streams. ``end()`` does its work once; a second call does nothing, so the normal end
  and a ``finally`` may both call it.
- set :attr:`Record.stream` to ``True`` and add the payload bytes as they pass:
  ``record.bytes_in += len(piece)`` for what the client sent, ``record.bytes_out`` for
  what it was sent. The access line of a stream ends with `` in=<bytes> out=<bytes>``
  (JSON fields ``bytes_in``, ``bytes_out``); a unary line stays as it is.
- set ``status`` as soon as it is known (the response head, the gRPC status); a stream
  cut short keeps the one it had (500 / UNKNOWN until then).

The request ID stays current for the rest of the task (the handlers' tasks are one
per request), except at the gateway's HTTP side: there ``end()`` resets it, since an
ASGI app may be called in a task that lives on (an embedding app's middleware).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind

from narun._types import Scope
from narun.observe import log, requestid, tracing
from narun.observe.log import ACCESS_LOGGER
from narun.observe.metrics import UNMATCHED, GatewayMetrics, RequestRecorder, UpDown
from narun.protocol import grpcwire, wire
from narun.protocol.bhttp import Request
from narun.protocol.grpcwire import StatusCode

__all__ = [
    "ConsumerGrpcRecord",
    "ConsumerHttpRecord",
    "GatewayGrpcRecord",
    "GatewayHttpRecord",
    "Record",
]

_access = logging.getLogger(ACCESS_LOGGER)
_RID = requestid.HEADER.decode()
_Pairs = tuple[tuple[str, str | bytes], ...]


class Record:
    """The books of one request, from its construction to :meth:`end` (see module doc).

    A kind sets ``status`` (an HTTP status or a gRPC code) and fills in
    :meth:`_observe`, :meth:`_end_span` and :meth:`_access`.
    """

    # Class-level defaults: a request pays only for the fields it changes. No
    # __slots__: instances keep their fields inline all the same (CPython 3.11+).
    span: Span | None = None
    """The request's span, ``None`` when tracing is off."""
    status = 500
    """The outcome: an HTTP status, or a gRPC status code."""
    stream = False
    """Whether this is a stream: its access line then has the byte counts."""
    bytes_in = 0
    """Payload bytes received from the client so far (streams count them)."""
    bytes_out = 0
    """Payload bytes sent to the client so far (streams count them)."""
    ended = False
    """Whether :meth:`end` has run."""
    _gauge: UpDown | None = None
    _token: Token[str | None] | None = None
    _bound = True

    def __init__(self, request_id: str, *, restore: bool = False, bind: bool = True) -> None:
        self.started = time.perf_counter()
        """:func:`time.perf_counter` when the request began."""
        self.request_id = request_id
        """The request's ID, current in the task from now on (unless not ``bind``)."""
        if not bind:
            # Served by callbacks rather than one task (the gateway's HTTP fast path):
            # the ID is made current only around the access line.
            self._bound = False
            return
        token = requestid.current.set(request_id)
        if restore:
            self._token = token

    def count(self, gauge: UpDown | None) -> None:
        """Count the request in ``gauge`` (if any) until :meth:`end`."""
        if gauge is not None:
            gauge.inc()
            self._gauge = gauge

    def end(self) -> None:
        """Close the books: in-flight count, metrics, span, access line, request ID.

        Runs once; later calls do nothing.
        """
        if self.ended:
            return
        self.ended = True
        seconds = time.perf_counter() - self.started
        gauge = self._gauge
        if gauge is not None:
            gauge.dec()
        self._observe(seconds)
        span = self.span
        if span is not None:
            self._end_span(span)
        if _access.isEnabledFor(logging.INFO):
            msg, args, fields = self._access(round(seconds * 1000, 3))
            if self.stream:
                msg += " in=%d out=%d"
                args += (self.bytes_in, self.bytes_out)
                fields["bytes_in"], fields["bytes_out"] = self.bytes_in, self.bytes_out
            if self._bound:
                log.access(msg, args, fields)
            else:
                token = requestid.current.set(self.request_id)
                try:
                    log.access(msg, args, fields)
                finally:
                    requestid.current.reset(token)
        if self._token is not None:
            requestid.current.reset(self._token)

    def discard(self) -> None:
        """Close the books without counting the request: another record takes it over."""
        if self.ended:
            return
        self.ended = True
        gauge = self._gauge
        if gauge is not None:
            gauge.dec()
        span = self.span
        if span is not None:
            span.end()
        if self._token is not None:
            requestid.current.reset(self._token)

    def _observe(self, seconds: float) -> None:
        """Record the metrics of the finished request."""
        raise NotImplementedError

    def _end_span(self, span: Span) -> None:
        """Set the final attributes of ``span`` and end it."""
        raise NotImplementedError

    def _access(self, ms: float) -> tuple[str, tuple[object, ...], dict[str, object]]:
        """The access line: format, its arguments, the JSON fields."""
        raise NotImplementedError


# --- the gateway ----------------------------------------------------------------------


class GatewayHttpRecord(Record):
    """An HTTP request at the gateway; ``tracer`` ``None``: no span (the edge's refusals).

    The handler sets ``pattern`` (the matched route's) and ``service`` once routed, and
    counts the forwarded requests in flight with :meth:`count`.
    """

    pattern = UNMATCHED
    """The route pattern (the ``path`` label), ``<unmatched>`` until one matches."""
    service = "-"
    """The service the request goes to, ``-`` until routed."""

    def __init__(
        self,
        scope: Scope,
        metrics: GatewayMetrics | None,
        tracer: tracing.LazyTracer | None,
        *,
        bind: bool = True,
    ) -> None:
        super().__init__(requestid.from_headers(scope["headers"]), restore=True, bind=bind)
        self.scope = scope
        self.method: str = scope["method"]
        self._metrics = metrics
        otel = None if tracer is None else tracer.get()
        if otel is not None:
            attributes = {
                "http.request.method": self.method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            }
            client = scope.get("client")
            if client:
                attributes["client.address"] = str(client[0])
            self.span = otel.start_span(
                self.method,
                context=tracing.extract_headers(scope["headers"]),
                kind=SpanKind.SERVER,
                attributes=attributes,
            )

    def _observe(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_http(self.method, self.pattern, self.status, seconds)
            if self.stream:
                self._metrics.observe_stream(self.pattern, self.bytes_in, self.bytes_out, seconds)

    def _end_span(self, span: Span) -> None:
        attributes: dict[str, str | int] = {"http.response.status_code": self.status}
        if self.pattern != UNMATCHED:
            attributes["http.route"] = self.pattern
            span.update_name(f"{self.method} {self.pattern}")
        tracing.end_span(span, attributes, error=self.status >= 500)

    def _access(self, ms: float) -> tuple[str, tuple[object, ...], dict[str, object]]:
        client = self.scope.get("client")
        addr = wire.format_addr(client) if client else "-"
        method, pattern, service, status = self.method, self.pattern, self.service, self.status
        return (
            "%s %s -> %s %d %.3fms client=%s",
            (method, pattern, service, status, ms, addr),
            {
                "method": method,
                "route": pattern,
                "service": service,
                "status": status,
                "duration_ms": ms,
                "client": addr,
            },
        )


class GatewayGrpcRecord(Record):
    """A gRPC call at the gateway; ``service`` is ``None`` when no route takes it.

    ``peer`` gives the client's grpcio peer string, asked only for the access line.
    """

    status = StatusCode.UNKNOWN

    def __init__(
        self,
        method: str,
        service: str | None,
        metadata: _Pairs,
        peer: Callable[[], str],
        metrics: GatewayMetrics | None,
        tracer: tracing.LazyTracer,
    ) -> None:
        super().__init__(_metadata_request_id(metadata))
        self.method = method
        self.label = method if service is not None else UNMATCHED
        self.service = "-" if service is None else service
        self._peer = peer
        self._metrics = metrics
        otel = tracer.get()
        if otel is not None:
            attributes = {"rpc.system": "grpc"}
            parts = grpcwire.split_method(method)
            if parts is not None:
                attributes["rpc.service"], attributes["rpc.method"] = parts
            self.span = otel.start_span(
                method.lstrip("/"),
                context=tracing.extract_metadata(metadata),
                kind=SpanKind.SERVER,
                attributes=attributes,
            )
        if metrics is not None:
            self.count(metrics.in_flight_grpc)

    def _observe(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_grpc(self.label, grpcwire.code_name(self.status), seconds)

    def _end_span(self, span: Span) -> None:
        code = int(self.status)
        tracing.end_span(span, {"rpc.grpc.status_code": code}, error=code != StatusCode.OK)

    def _access(self, ms: float) -> tuple[str, tuple[object, ...], dict[str, object]]:
        method, service, code = self.method, self.service, grpcwire.code_name(self.status)
        addr = grpcwire.peer_address(self._peer()) or "-"
        return (
            "gRPC %s -> %s %s %.3fms client=%s",
            (method, service, code, ms, addr),
            {
                "method": method,
                "service": service,
                "grpc_code": code,
                "duration_ms": ms,
                "client": addr,
            },
        )


def _metadata_request_id(metadata: _Pairs) -> str:
    """The client's well-formed ``x-request-id``, else a new ID."""
    for key, value in metadata:
        if key == _RID:
            return requestid.accept(value if isinstance(value, str) else None)
    return requestid.new_request_id()


# --- the consumer ---------------------------------------------------------------------


class _ConsumerRecord(Record):
    """A request that came as a NATS message: its span is the consumer's, made current."""

    _context: Token[otel_context.Context] | None = None

    def __init__(
        self,
        headers: Mapping[str, str],
        subject: str,
        size: int,
        recorder: RequestRecorder | None,
        tracer: tracing.LazyTracer,
    ) -> None:
        super().__init__(requestid.accept(headers.get(wire.REQUEST_ID)))
        self.headers = headers
        """The NATS message's headers."""
        self._recorder = recorder
        if recorder is not None:
            self.count(recorder.active)
        otel = tracer.get()
        if otel is not None:
            self.span, self._context = tracing.process(otel, headers, subject, size, {})

    def _finish_span(self, span: Span, attributes: Mapping[str, Any], *, error: bool) -> None:
        assert self._context is not None
        tracing.finish(span, self._context, attributes, error=error)


class ConsumerHttpRecord(_ConsumerRecord):
    """A Binary HTTP request at an HTTP consumer; the handler sets ``request`` once decoded."""

    request: Request | None = None
    """The decoded request (``None`` while undecoded, or if it could not be)."""

    def _observe(self, seconds: float) -> None:
        if self._recorder is not None:
            self._recorder.observe(str(self.status), seconds)

    def _end_span(self, span: Span) -> None:
        attributes: dict[str, str | int] = {"http.response.status_code": self.status}
        request = self.request
        if request is not None:
            attributes["http.request.method"] = request.method
            attributes["url.path"] = request.path.partition("?")[0]
        self._finish_span(span, attributes, error=self.status >= 500)

    def _access(self, ms: float) -> tuple[str, tuple[object, ...], dict[str, object]]:
        request = self.request
        method, path = ("-", "-") if request is None else (request.method, request.path)
        path = path.partition("?")[0]  # the query may hold what a log should not
        status = self.status
        return (
            "%s %s %d %.3fms",
            (method, path, status, ms),
            {"method": method, "path": path, "status": status, "duration_ms": ms},
        )


class ConsumerGrpcRecord(_ConsumerRecord):
    """A gRPC call at a gRPC consumer; ``status`` is INTERNAL until the handler sets it."""

    status = StatusCode.INTERNAL

    @property
    def method(self) -> str:
        """The ``/pkg.Service/Method`` the call names, ``-`` if none."""
        return self.headers.get(wire.GRPC_METHOD) or "-"

    def _observe(self, seconds: float) -> None:
        if self._recorder is not None:
            self._recorder.observe(grpcwire.code_name(self.status), seconds)

    def _end_span(self, span: Span) -> None:
        attributes: dict[str, str | int] = {"rpc.system": "grpc"}
        parts = grpcwire.split_method(self.method)
        if parts is not None:
            attributes["rpc.service"], attributes["rpc.method"] = parts
        code = attributes["rpc.grpc.status_code"] = int(self.status)
        self._finish_span(span, attributes, error=code != StatusCode.OK)

    def _access(self, ms: float) -> tuple[str, tuple[object, ...], dict[str, object]]:
        method, name = self.method, grpcwire.code_name(self.status)
        return (
            "gRPC %s %s %.3fms",
            (method, name, ms),
            {"method": method, "grpc_code": name, "duration_ms": ms},
        )
