"""The gateway's HTTP/1.1 fast path: plain requests forwarded without ASGI.

``narun gateway`` serves HTTP with uvicorn and :class:`FrontProtocol`, a subclass of
its httptools protocol (:mod:`narun.gateway.uvproto`). uvicorn keeps doing what a
server must do on the connection: llhttp's parsing and request-smuggling checks,
keep-alive, pipelining, ``Expect: 100-continue``, timeouts, graceful shutdown, upgrades.
What changes is the common request. uvicorn runs every request as an ASGI task with a
scope, ``receive`` and ``send`` coroutines, and the gateway's ASGI app then goes through
the edge middleware and :class:`narun.gateway.http.HTTPGateway`; that machinery was
most of the gateway's CPU time per request. A *plain* request instead is served by
callbacks on the connection:

1. when uvicorn would start the request's task, :meth:`Front.plan` decides whether the
   request is plain: it matches an HTTP route, has no upgrade, no ``Expect``, no
   ``Transfer-Encoding``, a ``Content-Length`` body (or none) small enough to be held
   whole, fits the edge's size caps, and tracing is off;
2. once its body is parsed (if it is not complete within the route's timeout, the
   answer is 408, as on the ASGI path), the Binary HTTP request is
   made by the shared core (:mod:`narun.gateway.forward`) and published with
   :meth:`narun.transport.requester.Requester.send`: no task, no future, a timer for
   the timeout;
3. the reply callback writes status line, fields and body with one write and lets
   uvicorn go on with the connection (its ``on_response`` callback: the next pipelined
   request, or the keep-alive timer).

Every other case goes to the ASGI app exactly as before, from the start of the request
(nothing was consumed: the body stays in uvicorn's cycle), or, for a reply that opens a
stream, from that reply (:meth:`narun.gateway.http.HTTPGateway.resume_stream`, in a
task on uvicorn's ``send``/``receive``). A request sent to nobody (NATS no-responders)
or refused as overloaded is also handed over when the ASGI path would retry it or wake
a scaled-to-zero service: no consumer ran it, so it may be sent again.

uvicorn internals used (uvicorn 0.30 and later): ``HttpToolsProtocol._start_asgi_task``
(overridden: the point where a request is started, pipelined or not), ``on_body``,
``on_message_complete``, ``connection_lost`` and ``data_received`` (extended), the
cycle's fields ``body``, ``more_body``, ``keep_alive``, ``disconnected``,
``response_started``, ``response_complete``, ``waiting_for_100_continue``,
``message_event``, ``on_response``, and ``server_state.default_headers``/``tasks``; the
module's ``STATUS_LINE``, ``HEADER_RE`` and ``HEADER_VALUE_RE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar

from nats.aio.msg import Msg
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

from narun._types import Scope
from narun.config.gateway import HTTPRoute
from narun.errors import BodyTimeout, NarunError, NoResponders, PayloadTooLarge, RequestTimeout
from narun.gateway.edge import Edge
from narun.gateway.forward import (
    error_answer,
    failure_status,
    nats_headers,
    reply_response,
    response_fields,
    to_bhttp,
)
from narun.gateway.http import HTTPGateway
from narun.gateway.routing import Match
from narun.gateway.uvproto import CoalescingTransport, HTTPToolsProtocol
from narun.observe import requestid
from narun.observe.record import GatewayHttpRecord
from narun.protocol import golimits, wire
from narun.protocol.bhttp import encode_request
from narun.protocol.forwarded import header_bytes, resolve
from narun.protocol.nats import header_block
from narun.protocol.textreply import Field
from narun.protocol.wire import OVERLOADED
from narun.transport.requester import Requester

__all__ = ["Front", "FrontProtocol"]

logger = logging.getLogger(__name__)

# Room left in a NATS message for the request head and the NATS headers (as the ASGI
# path counts it), and the most body the fast path holds: uvicorn pauses reading past it.
_HEAD_ROOM = 16 * 1024
_MAX_BODY = HIGH_WATER_LIMIT
_FAILED: list[Field] = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]
# Request fields that send a request the ASGI way.
_NOT_PLAIN = frozenset((b"transfer-encoding", b"upgrade", b"expect"))


class Front:
    """The fast path's view of one gateway, shared by all its connections."""

    def __init__(self, http: HTTPGateway, edge: Edge) -> None:
        self.http = http
        self.edge = edge
        self.fast = 0
        """Requests served on the fast path (all the way, or up to a streamed reply)."""
        self.handed_over = 0
        """Requests the fast path handed to the ASGI app."""

    def plan(self, cycle: RequestResponseCycle) -> HTTPRoute | None:
        """The route of a plain request (see the module doc); None: not one."""
        scope: Scope = cycle.scope  # type: ignore[assignment]
        if cycle.waiting_for_100_continue or scope["root_path"]:
            return None
        http = self.http
        requester = http.requester()
        if requester is None or not requester.nc.is_connected or http.tracing:
            return None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        declared = 0
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    return None
                declared = int(value)
            elif name in _NOT_PLAIN:
                return None
        edge = self.edge
        if header_bytes(headers) > edge.max_header_bytes:
            return None
        if declared:
            room = min(_MAX_BODY, requester.nc.max_payload - _HEAD_ROOM)
            if edge.max_body_bytes is not None:
                room = min(room, edge.max_body_bytes)
            if declared > room:
                return None
        result = http.router.match(scope["method"], scope["path"])
        if not isinstance(result, Match):
            return None  # 404, 405 and redirects: the ASGI app answers them
        route = result.route
        limit = http.route_params(route)[4]
        if declared and limit is not None and declared > limit:
            return None
        return route

    def collector(self) -> Collector:
        """A Prometheus collector of :attr:`fast` and :attr:`handed_over`."""
        return _FrontCollector(self)


class _FrontCollector(Collector):
    def __init__(self, front: Front) -> None:
        self.front = front

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "narun_gateway_http_front_requests",
            "HTTP requests by the way the gateway served them (fast: without ASGI).",
            labels=["way"],
        )
        family.add_metric(["fast"], self.front.fast)
        family.add_metric(["asgi"], self.front.handed_over)
        yield family


class FrontProtocol(HTTPToolsProtocol):
    """uvicorn's httptools protocol with the fast path (see the module doc).

    Serve with a subclass whose :attr:`front` is set (as :func:`protocol_for` makes).
    """

    front: ClassVar[Front | None] = None
    # A plain request whose body is still coming, and the timer that gives up on it.
    _waiting: tuple[RequestResponseCycle, HTTPRoute] | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _serving: _Exchange | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # The one place where uvicorn starts a request, at once or after the pipelined
        # ones before it.
        self._unset_keepalive_if_required()
        front = self.front
        route = None if front is None or app is not self.app else front.plan(cycle)
        if route is None:
            if front is not None:
                front.handed_over += 1
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:
            self._waiting = (cycle, route)  # until its body is in
        else:
            self._exchange(cycle, route)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        waiting = self._waiting
        if waiting is not None and waiting[0] is self.cycle:
            self._stop_waiting()
            self._exchange(*waiting)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting is not None and self._body_timer is None:
            # The body did not all come with the head (a client may write them
            # separately): wait for it up to the route's timeout, then answer 408 as
            # the ASGI path does.
            timeout = self.front.http.route_params(self._waiting[1])[0] if self.front else 0
            self._body_timer = self.loop.call_later(timeout, self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._body_timer = None
        waiting = self._waiting
        if waiting is not None and self.front is not None:
            self._waiting = None
            cycle, route = waiting
            self.front.fast += 1
            exchange = _Exchange(self, self.front, cycle, route)
            timeout = self.front.http.route_params(route)[0]
            exchange.refuse(BodyTimeout(f"request body not complete after {timeout}s"))

    def _stop_waiting(self) -> None:
        self._waiting = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        serving = self._serving
        self._stop_waiting()
        super().connection_lost(exc)
        if serving is not None:
            serving.client_gone()

    def hand_over(self, cycle: RequestResponseCycle) -> None:
        """Serve ``cycle`` the ASGI way from its start (its body is still in it)."""
        if self.transport.is_closing():
            return
        if self.front is not None:
            self.front.handed_over += 1
        super()._start_asgi_task(cycle, self.app)

    def _exchange(self, cycle: RequestResponseCycle, route: HTTPRoute) -> None:
        assert self.front is not None
        self.front.fast += 1
        exchange = None
        try:
            exchange = _Exchange(self, self.front, cycle, route)
            self._serving = exchange
            exchange.send()
        except Exception:
            # A bug, not a client's doing: answer 500 and drop the connection, as
            # uvicorn does for an app that fails before answering.
            logger.exception("the HTTP fast path failed on %s", route.path)
            self._serving = None
            if not cycle.response_started:
                self.respond(cycle, 500, _FAILED, b"Internal Server Error")
            if exchange is not None and not exchange.record.ended:
                exchange.record.status = 500
                exchange.record.end()
            self.transport.close()

    def respond(
        self, cycle: RequestResponseCycle, status: int, fields: list[Field], body: bytes
    ) -> bool:
        """Write a whole response as uvicorn's ``send`` would, with one write.

        Returns False (and drops the connection, as uvicorn does) if a field cannot
        be written.
        """
        if cycle.disconnected or cycle.response_started:
            return True
        line = STATUS_LINE.get(status)
        if line is None:
            line = b"HTTP/1.1 %d \r\n" % status
        content = [line]
        close = False
        for name, value in (*cycle.default_headers, *fields):
            # What uvicorn refuses to write in a field (then drops the connection): the same.
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                logger.error("response field %r cannot be written: connection dropped", name)
                cycle.response_started = True
                self.transport.close()
                return False
            name = name.lower()
            if name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                cycle.keep_alive = False
                close = True
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive and not close:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.write_whole(b"".join(content))  # one write already: no need to wait
        else:
            transport.write(b"".join(content))
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
        return True

    def start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as uvicorn runs a request's task (awaited on shutdown)."""
        task = self.loop.create_task(coro)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)


class _Exchange:
    """One plain request on the fast path: sent, then answered from its reply callback."""

    __slots__ = (
        "body_size",
        "cycle",
        "front",
        "idle",
        "proto",
        "record",
        "requester",
        "rid_field",
        "route",
        "scope",
        "token",
    )

    def __init__(
        self, proto: FrontProtocol, front: Front, cycle: RequestResponseCycle, route: HTTPRoute
    ) -> None:
        self.proto = proto
        self.front = front
        self.cycle = cycle
        self.route = route
        self.token = ""
        self.requester: Requester | None = None
        self.body_size = 0
        self.idle = 0.0
        # What the edge middleware does to the scope: forwarded fields decided.
        scope: Scope = cycle.scope  # type: ignore[assignment]
        forwarded, origin = resolve(
            scope["headers"],
            peer=scope["client"],
            scheme=scope["scheme"],
            trusted=front.edge.trusted,
        )
        inner = dict(scope)
        inner["headers"] = forwarded
        inner["client"] = origin.client
        inner["scheme"] = origin.scheme
        self.scope = inner
        http = front.http
        record = self.record = GatewayHttpRecord(inner, http.metrics, None, bind=False)
        record.pattern, record.service = route.path, route.service
        self.rid_field: Field = (requestid.HEADER, record.request_id.encode())

    def send(self) -> None:
        """Make the Binary HTTP request and publish it (or answer at once)."""
        http = self.front.http
        record = self.record
        requester = http.requester()
        if requester is None:
            self.hand_over()
            return
        record.count(http.in_flight)
        timeout, timeout_ms, self.idle, idle_ms, _ = http.route_params(self.route)
        scope = self.scope
        body = bytes(self.cycle.body)
        self.body_size = len(body)
        try:
            request = to_bhttp(scope, body, self.rid_field)
            if http.config.go_peer_limits:
                golimits.check_request(request)
            block = header_block(
                nats_headers(scope["client"], record.request_id, timeout_ms, idle_ms)
            )
            payload = encode_request(request)
        except NarunError as exc:
            self.fail(exc)
            return
        try:
            self.token = requester.send(self.route.service, block, payload, timeout, self.on_reply)
        except PayloadTooLarge as exc:
            self.fail(exc)
            return
        except NarunError:
            self.hand_over()  # not connected, draining: the ASGI path has the answer
            return
        self.requester = requester

    def refuse(self, exc: NarunError) -> None:
        """Answer with ``exc`` without sending the request (counted in flight as sent)."""
        self.record.count(self.front.http.in_flight)
        self.fail(exc)

    def on_reply(self, outcome: Msg | NarunError) -> None:
        """The reply (or the error that ended the wait) is here: answer the client."""
        self.proto._serving = None
        if self.record.ended:
            return  # the client went away first
        try:
            self._answer(outcome)
        except Exception:
            logger.exception("answering %s failed", self.route.path)
            self.record.status = 500
            self.record.end()
            self.proto.transport.close()

    def _answer(self, outcome: Msg | NarunError) -> None:
        http = self.front.http
        metrics = http.metrics
        service = self.route.service
        if isinstance(outcome, NarunError):
            if metrics is not None:
                result = "timeout" if isinstance(outcome, RequestTimeout) else "error"
                metrics.observe_nats(service, result)
            self.fail(outcome)
            return
        hdrs = outcome.headers
        if hdrs is not None:
            retry = http.config.retry_seconds > 0
            if not outcome.data and hdrs.get("Status") == "503":
                if retry or http.waker is not None:
                    self.hand_over()  # retried or woken the ASGI way
                    return
                if metrics is not None:
                    metrics.observe_nats(service, "error")
                self.fail(NoResponders(f"no responders on {service}"))
                return
            if retry and OVERLOADED in hdrs:
                self.hand_over()
                return
        if metrics is not None:
            metrics.observe_nats(service, "success")
        if hdrs and wire.STREAM_CREDIT in hdrs and self.requester is not None:
            channel = self.requester.stream_of(outcome)
            if channel is not None:
                cycle = self.cycle
                # As if an ASGI app had read the body: the next receive() then waits
                # for the client to go away.
                cycle.body = bytearray()
                cycle.message_event.clear()
                self.proto.start_task(
                    self._stream(
                        http.resume_stream(
                            channel,
                            self.scope,
                            cycle.receive,  # type: ignore[arg-type]
                            cycle.send,  # type: ignore[arg-type]
                            self.record,
                            self.body_size,
                            self.idle,
                        )
                    )
                )
                return
        try:
            response = reply_response(outcome)
        except NarunError as exc:
            self.fail(exc)
            return
        status, fields, body = response_fields(self.scope["method"], response, self.rid_field)
        self.finish(status, fields, body)

    async def _stream(self, relay: Coroutine[Any, Any, None]) -> None:
        cycle = self.cycle
        try:
            await relay
        finally:
            if not cycle.response_complete and not cycle.disconnected:
                self.proto.transport.close()  # cut short: as uvicorn does

    def fail(self, exc: NarunError) -> None:
        """Answer with the failure ``exc`` means."""
        scope = self.scope
        logger.warning(
            "%s %s -> %s: %s",
            scope["method"],
            scope["path"],
            self.route.service,
            exc,
            extra={"request_id": self.record.request_id},
        )
        status = failure_status(exc)
        fields, body = error_answer(status, exc.public_message, self.rid_field)
        self.finish(status, fields, body)

    def finish(self, status: int, fields: list[Field], body: bytes) -> None:
        """Write the answer and close the request's books."""
        record = self.record
        record.status = status
        if not self.proto.respond(self.cycle, status, fields, body):
            record.status = 500
        record.end()

    def hand_over(self) -> None:
        """Give the request to the ASGI app, from its start; this record is dropped."""
        self.proto._serving = None
        self.record.discard()
        self.proto.hand_over(self.cycle)

    def client_gone(self) -> None:
        """The connection was lost while waiting for the reply: stop waiting."""
        record = self.record
        if record.ended:
            return
        if self.requester is not None:
            self.requester.forget(self.token, self.route.service)
        scope = self.scope
        logger.info(
            "%s %s -> %s: client went away while waiting for the reply",
            scope["method"],
            scope["path"],
            self.route.service,
            extra={"request_id": record.request_id},
        )
        record.status = 499
        record.end()


def protocol_for(front: Front, header_timeout: float) -> type[FrontProtocol]:
    """The protocol class uvicorn is given: :class:`FrontProtocol` serving ``front``."""
    attrs = {"front": front, "header_timeout": header_timeout}
    return type("FrontProtocol", (FrontProtocol,), attrs)
