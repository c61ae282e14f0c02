"""The HTTP side of the gateway: an ASGI app that forwards routed requests over NATS.

Every request ends with a definite answer: the backend's reply, or an error status
from :mod:`narun.errors` with a short generic body. Nothing internal reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import quote_from_bytes

from nats.aio.msg import Msg

from narun._types import Message, Receive, Scope, Send
from narun.config.gateway import GatewayConfig, HTTPRoute
from narun.errors import (
    BackendError,
    BadBackendReply,
    BinaryHTTPError,
    BodyTimeout,
    NarunError,
    PayloadTooLarge,
    RequestTimeout,
)
from narun.gateway.routing import Match, MethodNotAllowed, Redirect, Router
from narun.gateway.wake import Waker, call_waking
from narun.observe import requestid, tracing
from narun.observe.metrics import GatewayMetrics
from narun.observe.record import GatewayHttpRecord
from narun.protocol import golimits, wire
from narun.protocol.bhttp import Request, decode_response, encode_request
from narun.protocol.fields import end_to_end
from narun.protocol.textreply import RETRY_AFTER, Field, send_text
from narun.transport.requester import Requester

__all__ = ["HTTPGateway"]

logger = logging.getLogger(__name__)

# Connection-level fields that a proxy must not forward (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
# Content-Length is recomputed from the body actually read (and Host becomes :authority).
# X-Request-ID: the gateway's own (the client's when well formed) replaces any other.
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", requestid.HEADER}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", requestid.HEADER}
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def _service_error_status(code: str) -> int:
    # The consumer's own deadline and overload answers keep their meaning; everything
    # else a consumer reports as a service error is a bad gateway for the client.
    if code in ("503", "504"):
        return int(code)
    return 502


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
        # Per route: the reply timeout and its Narun-Timeout-Ms header value.
        self._timeouts = {
            id(r): (t, wire.format_timeout(t))
            for r in config.http_routes
            for t in (config.route_timeout(r),)
        }

    def set_dynamic_routes(self, routes: tuple[HTTPRoute, ...]) -> None:
        """Route the static routes plus ``routes`` (claimed by services) from now on."""
        every = self.config.http_routes + routes
        router = Router(every)
        self._timeouts = {
            id(r): (t, wire.format_timeout(t))
            for r in every
            for t in (self.config.route_timeout(r),)
        }
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
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
        try:
            if requester is None:
                raise NarunError("gateway has no NATS connection")
            timeout, timeout_ms = self._timeouts[id(route)]
            body = await _read_body(scope, receive, requester.nc.max_payload, timeout)
            request = _to_bhttp(scope, body, rid_field)
            if self.config.go_peer_limits:
                golimits.check_request(request)  # 414/400 rather than a Go consumer's 502
            payload = encode_request(request)
            headers = {wire.CONTENT_TYPE: wire.BHTTP_CONTENT_TYPE, wire.REQUEST_ID: rid}
            client = scope.get("client")
            if client:
                headers[wire.CLIENT_ADDR] = wire.format_addr(client)
            headers[wire.TIMEOUT_MS] = timeout_ms
            try:
                if span is None:  # no tracing: not even a no-op context manager
                    reply = await self._call(requester, service, payload, headers, timeout)
                else:
                    with tracing.sending(self._tracer, span, service, headers, len(payload)):
                        reply = await self._call(requester, service, payload, headers, timeout)
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
            if metrics is not None:
                metrics.observe_nats(service, "success")
            rh = reply.headers
            # ADR-32: either header marks an error reply (some peers send the code alone).
            if rh and (wire.SERVICE_ERROR in rh or wire.SERVICE_ERROR_CODE in rh):
                raise BackendError(
                    rh.get(wire.SERVICE_ERROR, ""), rh.get(wire.SERVICE_ERROR_CODE, "")
                )
            try:
                response = decode_response(reply.data)
            except BinaryHTTPError as exc:
                raise BadBackendReply(str(exc)) from None
        except BackendError as exc:
            status = _service_error_status(exc.code)
            logger.warning("%s %s -> %s: %s", scope["method"], scope["path"], service, exc)
            return await _fail(send, status, exc.public_message, rid_field)
        except NarunError as exc:
            logger.warning("%s %s -> %s: %s", scope["method"], scope["path"], service, exc)
            return await _fail(send, exc.http_status, exc.public_message, rid_field)
        except Exception:
            logger.exception("%s %s -> %s failed", scope["method"], scope["path"], service)
            return await _fail(send, 500, "Internal server error", rid_field)

        head = scope["method"] == "HEAD"
        # RFC 9110 6.4.1: no content in a 204 or 304, nor in any answer to HEAD, whatever
        # the backend sent (a Go consumer passes on what the handler wrote).
        bodyless = head or response.status in (204, 304)
        out = [(k, v) for k, v in end_to_end(response.headers) if k.lower() not in _RESPONSE_DROP]
        if head:
            out.extend((k, v) for k, v in response.headers if k.lower() == b"content-length")
        elif not bodyless:
            out.append((b"content-length", str(len(response.content)).encode()))
        out.append(rid_field)
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if bodyless else response.content})
        return response.status

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


async def _read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"content-length {int(value)} > max_payload {limit}")
            break
    message: Message = await receive()
    if not message.get("more_body", False) and message["type"] == "http.request":
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


def _to_bhttp(scope: Scope, body: bytes, request_id: tuple[bytes, bytes] | None = None) -> Request:
    authority = ""
    headers: list[tuple[bytes, bytes]] = []
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"host":
                authority = value.decode("latin-1")
            continue
        headers.append((name, value))
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    if not target.isascii():
        # Raw UTF-8 (or other) bytes in the request line: percent-encode them, as a
        # browser would have, so that the Binary HTTP control data stays ASCII.
        target = quote_from_bytes(target, safe=_PRINTABLE_ASCII).encode("ascii")
    if len(body) or scope["method"] in ("POST", "PUT", "PATCH"):
        headers.append((b"content-length", str(len(body)).encode()))
    if request_id is not None:
        headers.append(request_id)
    return Request(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        authority=authority,
        path=target.decode("latin-1"),
        headers=tuple(headers),
        content=body,
    )


def _id_field(record: GatewayHttpRecord) -> tuple[bytes, bytes]:
    return (requestid.HEADER, record.request_id.encode())


async def _fail(send: Send, status: int, message: str, rid_field: Field) -> int:
    # Every 503 here is transient (NATS down, nobody serving, all instances busy).
    fields = (rid_field, RETRY_AFTER) if status == 503 else (rid_field,)
    await send_text(send, status, message, fields)
    return status
