"""The HTTP side of the gateway: an ASGI app that forwards routed requests over NATS.

Every request ends with a definite answer: the backend's reply, or an error status
from :mod:`narun.errors` with a short generic body. Nothing internal reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.aio.msg import Msg

from narun._types import Message, Receive, Scope, Send
from narun.config.gateway import GatewayConfig, HTTPRoute
from narun.errors import (
    BadBackendReply,
    BodyTimeout,
    NarunError,
    PayloadTooLarge,
    RequestTimeout,
)
from narun.gateway.forward import (
    RESPONSE_DROP,
    content_length,
    error_answer,
    failure_status,
    nats_headers,
    reply_response,
    response_fields,
    to_bhttp,
)
from narun.gateway.routing import Match, MethodNotAllowed, Redirect, Router
from narun.gateway.streams import (
    BodyPump,
    ClientGone,
    DisconnectWatch,
    relay_reply,
    stream_error,
)
from narun.gateway.wake import Waker, call_waking
from narun.gateway.websocket import deny, relay_websocket
from narun.observe import requestid, tracing
from narun.observe.metrics import GatewayMetrics, UpDown
from narun.observe.record import GatewayHttpRecord
from narun.protocol import golimits, wire
from narun.protocol.bhttp import Response, encode_request
from narun.protocol.stream import ABORT_IDLE, DEFAULT_IDLE_MS, Frame, StreamError
from narun.protocol.textreply import RETRY_AFTER, Field, send_text
from narun.transport.requester import Requester
from narun.transport.stream import StreamChannel

__all__ = ["HTTPGateway"]

logger = logging.getLogger(__name__)

_RESPONSE_DROP = RESPONSE_DROP
_to_bhttp = to_bhttp
# Room left in a NATS message for the request head and the NATS headers: a body larger
# than max_payload less this is streamed (to consumers that can take it).
_HEAD_ROOM = 16 * 1024


class HTTPGateway:
    """ASGI app: route, encode as Binary HTTP, request over NATS, answer.

    ``requester`` is a callable returning the live :class:`Requester` (or None while the
    gateway has no NATS connection), so that the owner can manage the connection.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        requester: Callable[[], Requester | None],
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config = config
        self.router = Router(config.http_routes)
        self._requester = requester
        self.metrics = metrics
        self.waker: Waker | None = None
        """Holds requests while a scaled-to-zero service starts (set by the owner)."""
        self._in_flight = None if metrics is None else metrics.in_flight_http
        self._tracer = tracing.LazyTracer("narun.gateway")
        self._watch = DisconnectWatch()
        # Per route: the reply timeout and its Narun-Timeout-Ms header value, the stream
        # idle timeout and its header value, the largest body.
        self._route_params = self._params(config.http_routes)

    def _params(
        self, routes: tuple[HTTPRoute, ...]
    ) -> dict[int, tuple[float, str, float, str | None, int | None]]:
        config = self.config
        return {
            id(r): (t, wire.format_timeout(t), i, _idle_header(i), config.route_max_body(r))
            for r in routes
            for t, i in ((config.route_timeout(r), config.route_stream_idle(r)),)
        }

    def requester(self) -> Requester | None:
        """The live :class:`Requester`, None while the gateway has no NATS connection."""
        return self._requester()

    def route_params(self, route: HTTPRoute) -> tuple[float, str, float, str | None, int | None]:
        """Reply timeout (s and header value), stream idle (s and header), largest body."""
        return self._route_params[id(route)]

    @property
    def tracing(self) -> bool:
        """Whether requests get spans (an OpenTelemetry SDK is configured)."""
        return self._tracer.get() is not None

    @property
    def in_flight(self) -> UpDown | None:
        """The gauge of HTTP requests in flight."""
        return self._in_flight

    def set_dynamic_routes(self, routes: tuple[HTTPRoute, ...]) -> None:
        """Route the static routes plus ``routes`` (claimed by services) from now on."""
        every = self.config.http_routes + routes
        router = Router(every)
        self._route_params = self._params(every)
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            return
        record = GatewayHttpRecord(scope, self.metrics, self._tracer)
        try:
            method = record.method
            result = self.router.match(method, scope["path"])
            if isinstance(result, Match):
                route = result.route
                record.pattern, record.service = route.path, route.service
                record.count(self._in_flight)
                record.status = await self._forward(route, scope, receive, send, record)
            elif isinstance(result, MethodNotAllowed):
                record.pattern = result.pattern
                record.status = 405
                allow = (b"allow", ", ".join(result.allow).encode())
                await send_text(send, 405, "Method Not Allowed", (allow, _id_field(record)))
            elif isinstance(result, Redirect):
                status = record.status = 301 if method in ("GET", "HEAD") else 308
                location = scope.get("root_path", "") + result.location_path  # keep mount
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                where = (b"location", location.encode("utf-8", "surrogateescape"))
                await send_text(send, status, "", (where, _id_field(record)))
            else:
                record.status = 404
                await send_text(send, 404, "Not Found", (_id_field(record),))
        finally:
            record.end()

    async def _forward(
        self,
        route: HTTPRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: GatewayHttpRecord,
    ) -> int:
        rid = record.request_id
        span = record.span
        rid_field = _id_field(record)
        requester = self._requester()
        metrics = self.metrics
        service = route.service
        task: asyncio.Task[object] | None = None
        try:
            if requester is None:
                raise NarunError("gateway has no NATS connection")
            timeout, timeout_ms, idle, idle_ms, limit = self._route_params[id(route)]
            max_payload = requester.nc.max_payload
            declared = _content_length(scope)
            if limit is not None and declared is not None and declared > limit:
                raise PayloadTooLarge(f"content-length {declared} > max_body_bytes {limit}")
            first: Message = await receive()
            if first["type"] != "http.request":
                raise ClientGone("client went away before sending its body")
            fit = max_payload - _HEAD_ROOM
            first_body: bytes = first.get("body", b"")
            streamed = (first.get("more_body", False) and (declared is None or declared > fit)) or (
                len(first_body) > fit
            )
            if streamed:
                # A body too large for one message, or of unknown length: stream it to
                # a consumer that can take it, else fall back to one message.
                status = await self._forward_streamed(
                    route, scope, receive, send, record, first, declared, limit
                )
                if status is not None:
                    return status
                body = await _read_body(
                    first, receive, min(max_payload, limit or max_payload), timeout
                )
            else:
                body = await _read_body(first, receive, max_payload, timeout)
            if limit is not None and len(body) > limit:
                raise PayloadTooLarge(f"body over max_body_bytes {limit}")
            request = _to_bhttp(scope, body, rid_field)
            if self.config.go_peer_limits:
                golimits.check_request(request)  # 414/400 rather than a Go consumer's 502
            payload = encode_request(request)
            headers = self._nats_headers(scope, rid, timeout_ms, idle_ms)
            task = asyncio.current_task()
            if task is not None:
                # A client that goes away cancels the wait (and the consumer's work).
                self._watch.add(task, receive)
            try:
                if span is None:  # no tracing: not even a no-op context manager
                    reply = await self._call(requester, service, payload, headers, timeout)
                else:
                    with tracing.sending(self._tracer, span, service, headers, len(payload)):
                        reply = await self._call(requester, service, payload, headers, timeout)
            except asyncio.CancelledError:
                if task is not None and self._watch.remove(task):
                    task.uncancel()
                    raise ClientGone("client went away while waiting for the reply") from None
                raise
            except RequestTimeout:
                if metrics is not None:
                    metrics.observe_nats(service, "timeout")
                raise
            except PayloadTooLarge:
                raise
            except NarunError:
                if metrics is not None:
                    metrics.observe_nats(service, "error")
                raise
            finally:
                if task is not None:
                    self._watch.remove(task)
            if metrics is not None:
                metrics.observe_nats(service, "success")
            rh = reply.headers
            channel = requester.stream_of(reply) if rh and wire.STREAM_CREDIT in rh else None
            if channel is not None:
                return await self._stream_reply(
                    channel, scope, receive, send, record, len(body), idle
                )
            response = reply_response(reply)
        except Exception as exc:
            return await _failed(exc, scope, service, send, rid_field)

        return await _answer(scope, send, response, rid_field)

    async def _stream_reply(
        self,
        channel: StreamChannel,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: GatewayHttpRecord,
        body_size: int,
        idle: float,
    ) -> int:
        """Relay the reply that ``channel`` opened (its head is on the way)."""
        try:
            head = await channel.wait_head()
        except StreamError as exc:
            raise stream_error(exc) from None
        if not isinstance(head, Frame):
            raise BadBackendReply("streamed reply without a head")
        record.stream = True
        record.bytes_in = body_size
        metrics = self.metrics
        active = None if metrics is None else metrics.active_streams
        if active is not None:
            active.inc()
        try:
            return await relay_reply(
                channel,
                head,
                send,
                method=scope["method"],
                idle=idle,
                extra=[_id_field(record)],
                drop=_RESPONSE_DROP,
                receive=receive,
                record=record,
            )
        finally:
            if active is not None:
                active.dec()

    async def resume_stream(
        self,
        channel: StreamChannel,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: GatewayHttpRecord,
        body_size: int,
        idle: float,
    ) -> None:
        """Serve a request from the point where its reply opened a stream, then end it.

        The HTTP fast path (:mod:`narun.gateway.front`) sends unary requests itself and
        hands a streamed reply over to this, in a task; ``record`` is the request's.
        """
        try:
            try:
                record.status = await self._stream_reply(
                    channel, scope, receive, send, record, body_size, idle
                )
            except Exception as exc:
                record.status = await _failed(exc, scope, record.service, send, _id_field(record))
        finally:
            channel.close()
            record.end()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket opening: carried to the route's service, or refused with a status."""
        record = GatewayHttpRecord({**scope, "method": "GET"}, self.metrics, None)
        rid_field = _id_field(record)
        try:
            result = self.router.match("GET", scope["path"])
            if not isinstance(result, Match):
                record.status = 404
                await deny(scope, send, 404, "Not Found", (rid_field,))
                return
            route = result.route
            record.pattern, record.service = route.path, route.service
            requester = self._requester()
            if not route.websocket:
                record.status = 403
                await deny(scope, send, 403, "WebSocket not enabled on this route", (rid_field,))
                return
            if requester is None:
                record.status = 503
                await deny(scope, send, 503, "Service unavailable", (rid_field, RETRY_AFTER))
                return
            timeout, timeout_ms, idle, idle_ms, _ = self._route_params[id(route)]
            record.count(self._in_flight)
            record.status, record.bytes_in, record.bytes_out = await relay_websocket(
                scope,
                receive,
                send,
                requester=requester,
                service=route.service,
                headers=self._nats_headers(scope, record.request_id, timeout_ms, idle_ms),
                request_id=rid_field,
                timeout=timeout,
                idle=idle,
            )
            record.stream = record.status == 101
        finally:
            record.end()

    def _nats_headers(
        self, scope: Scope, rid: str, timeout_ms: str, idle_ms: str | None
    ) -> dict[str, str]:
        return nats_headers(scope.get("client"), rid, timeout_ms, idle_ms)

    async def _forward_streamed(
        self,
        route: HTTPRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: GatewayHttpRecord,
        first: Message,
        declared: int | None,
        limit: int | None,
    ) -> int | None:
        """Send a request whose body is streamed; None: no streaming consumer (fall back)."""
        rid_field = _id_field(record)
        span = record.span
        requester = self._requester()
        assert requester is not None
        timeout, timeout_ms, idle, idle_ms, _ = self._route_params[id(route)]
        first_body: bytes = first.get("body", b"")
        if limit is not None and len(first_body) > limit:
            raise PayloadTooLarge(f"body over max_body_bytes {limit}")
        part_size = requester.nc.max_payload - _HEAD_ROOM
        part, rest = first_body[:part_size], first_body[part_size:]
        request = _to_bhttp(scope, part, rid_field, content_length=declared)
        headers = self._nats_headers(scope, record.request_id, timeout_ms, idle_ms)
        service = route.service
        payload = encode_request(request)
        subject = wire.stream_subject(service)
        if span is None:
            channel = await requester.open_stream(subject, payload, headers)
        else:  # the consumer's span is a child of this one (the head carries the context)
            with tracing.sending(self._tracer, span, service, headers, len(payload)):
                channel = await requester.open_stream(subject, payload, headers)
        channel.start(idle)
        record.stream = True
        active = None if self.metrics is None else self.metrics.active_streams
        if active is not None:
            active.inc()
        more = first.get("more_body", False)
        pump = BodyPump(
            channel,
            receive if more else _ended,
            first=rest,
            seen=len(first_body),
            limit=limit,
            idle=idle,
        )
        try:
            try:
                async with asyncio.timeout(timeout):
                    head = await channel.wait_head()
            except TimeoutError:
                await channel.abort(ABORT_IDLE, "no reply head within the route's timeout")
                if self.metrics is not None:
                    self.metrics.observe_nats(service, "timeout")
                raise RequestTimeout(f"no reply head within {timeout}s") from None
            except StreamError as exc:
                if pump.client_gone:
                    raise ClientGone(str(exc)) from None
                if pump.client_idle:
                    raise BodyTimeout(f"request body stalled for {idle}s") from None
                raise stream_error(exc) from None
            if self.metrics is not None:
                self.metrics.observe_nats(service, "success")
            if not isinstance(head, Frame):
                # A single-message reply: no streaming consumer, or an early answer.
                hdrs = head.headers
                if hdrs is not None and not head.data and hdrs.get("Status") == "503":
                    pump.stop()
                    record.stream = False  # not a stream after all
                    return None  # nobody on <service>.stream: try the single-message form
                return await _answer(scope, send, reply_response(head), rid_field)
            return await relay_reply(
                channel,
                head,
                send,
                method=scope["method"],
                idle=idle,
                extra=[rid_field],
                drop=_RESPONSE_DROP,
                record=record,
            )
        finally:
            record.bytes_in = pump.seen
            if active is not None:
                active.dec()
            if not pump.task.done() and (channel.done or pump.client_gone):
                pump.stop()
            elif not pump.task.done():
                # The reply is complete while the client may still be sending: stop.
                pump.stop()
            channel.close()

    async def _call(
        self,
        requester: Requester,
        service: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> Msg:
        retry = self.config.retry_seconds
        if self.waker is None:
            return await requester.call(service, payload, headers, timeout, retry)
        return await call_waking(requester, self.waker, service, payload, headers, timeout, retry)


def _idle_header(seconds: float) -> str | None:
    """``Narun-Stream-Idle-Ms`` for an idle timeout; None for the protocol's default."""
    value = wire.format_timeout(seconds)
    return None if value == str(DEFAULT_IDLE_MS) else value


async def _ended() -> Message:
    return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    return content_length(scope["headers"])


async def _answer(
    scope: Scope, send: Send, response: Response, rid_field: tuple[bytes, bytes]
) -> int:
    status, fields, body = response_fields(scope["method"], response, rid_field)
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})
    return status


async def _read_body(first: Message, receive: Receive, limit: int, timeout: float) -> bytes:
    message = first
    if not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the usual case: the whole body at once
        if len(body) > limit:
            raise PayloadTooLarge(f"body over max_payload {limit}")
        return body
    try:
        # A body that arrives in pieces must arrive within the route's timeout: a
        # client trickling it would otherwise hold the request open forever.
        async with asyncio.timeout(timeout):
            return await _read_rest(receive, message, limit)
    except TimeoutError:
        raise BodyTimeout(f"request body not complete after {timeout}s") from None


async def _read_rest(receive: Receive, message: Message, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise NarunError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body over max_payload {limit}")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message = await receive()


def _id_field(record: GatewayHttpRecord) -> tuple[bytes, bytes]:
    return (requestid.HEADER, record.request_id.encode())


async def _failed(exc: Exception, scope: Scope, service: str, send: Send, rid_field: Field) -> int:
    """Answer a request that failed with ``exc``; return the status (499: no answer)."""
    if isinstance(exc, ClientGone):
        logger.info("%s %s -> %s: %s", scope["method"], scope["path"], service, exc)
        return 499
    if isinstance(exc, NarunError):
        logger.warning("%s %s -> %s: %s", scope["method"], scope["path"], service, exc)
        return await _fail(send, failure_status(exc), exc.public_message, rid_field)
    logger.exception("%s %s -> %s failed", scope["method"], scope["path"], service, exc_info=exc)
    return await _fail(send, 500, "Internal server error", rid_field)


async def _fail(send: Send, status: int, message: str, rid_field: Field) -> int:
    # Every 503 here is transient (NATS down, nobody serving, all instances busy).
    fields, body = error_answer(status, message, rid_field)
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})
    return status
