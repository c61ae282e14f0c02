"""The gRPC side of the gateway: a ``grpc.aio`` server that forwards unary calls over NATS.

One generic handler takes every method. The fully-qualified service of
``/pkg.Service/Method`` picks the route; the raw request message becomes the NATS
payload, and the method, the client's metadata, deadline and address go in NATS headers
(``narun.protocol.grpcwire``). The reply's status, message and metadata reach the client as the
servicer set them. Every call ends with a definite status; nothing internal reaches the
client.

Streaming: a gRPC server cannot tell a method's kind from its name, so every call is
taken as bidirectional. The first request message is forwarded at once as a unary NATS
request that offers a stream (``Narun-Stream``); a narun consumer serving a streaming
method answers by opening one, and :mod:`narun.gateway.grpcstreams` relays the rest of
the call. A single-message reply is a unary answer - unless the client is still sending
(a second message, or no half-close soon after the reply): then the consumer does not
stream (a Go consumer) and the call ends UNIMPLEMENTED at once.

Unary calls take a cheaper path once their method is known to be unary: a narun consumer
marks its answer to a unary method with ``Narun-Grpc-Unary`` when the request offered a
stream, and the gateway then serves that method of that service with a stream-unary
handler - one read, no stream offered, the reply and status sent in one go. An
UNIMPLEMENTED answer on that path (the method became streaming) unlearns it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from opentelemetry.trace import Span

from narun.config.addr import parse_addr
from narun.config.gateway import GatewayConfig, GRPCRoute
from narun.errors import (
    BadBackendReply,
    NarunError,
    NotConnected,
    PayloadTooLarge,
    RequestTimeout,
)
from narun.gateway import health
from narun.gateway.grpcstreams import relay
from narun.gateway.wake import Waker, call_waking
from narun.observe import requestid, tracing
from narun.observe.metrics import GatewayMetrics
from narun.observe.record import GatewayGrpcRecord
from narun.protocol import grpcwire, wire
from narun.protocol.grpcwire import GRPCStatus, GRPCWireError, Metadata, Metadatum, StatusCode
from narun.protocol.stream import DEFAULT_IDLE_MS, WINDOW
from narun.transport.requester import Requester
from narun.transport.stream import StreamChannel

__all__ = ["GRPCGateway"]

logger = logging.getLogger(__name__)

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
_NO_STREAMS = "the backend service does not serve streaming calls"
_HALF_CLOSE_WAIT = 0.05
"""Seconds a unary answer waits for the client's half-close before the call counts as
streaming (a unary client half-closes with its message)."""
_WINDOW = str(WINDOW)
_RID = requestid.HEADER.decode()
_Pairs = tuple[tuple[str, str | bytes], ...]
_MAX_UNARY = 4096
"""Known unary methods kept at most (the set starts over beyond)."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: GRPCStatus
    data: bytes | None = None
    """The response message to send (unary OK); None: none."""
    initial_sent: bool = False


_INTERNAL = _Outcome(GRPCStatus(StatusCode.INTERNAL, "Internal server error"))


def _error(exc: NarunError) -> _Outcome:
    return _Outcome(GRPCStatus(StatusCode[exc.grpc_code], exc.public_message))


def _listen_address(addr: str) -> str:
    host, port = parse_addr(addr)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GRPCGateway(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Generic handler of every gRPC method, and owner of the ``grpc.aio`` server.

    ``requester`` returns the live :class:`Requester` (or ``None`` while the gateway
    has no NATS connection), so that the owner manages the connection.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        requester: Callable[[], Requester | None],
        metrics: GatewayMetrics | None = None,
        is_ready: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._requester = requester
        self._tracer = tracing.LazyTracer("narun.gateway")
        # grpc.health.v1.Health/Check (unless a route forwards that service).
        ready = is_ready or (lambda: (self._requester() is not None, ""))
        routed = {r.grpc for r in config.grpc_routes}
        self._health = {
            health.CHECK: health.check_handler(ready, routed),
            health.WATCH: health.watch_handler(ready, routed),
        }
        self._routes: dict[str, tuple[GRPCRoute, float]] = {
            r.grpc: (r, config.route_timeout(r)) for r in config.grpc_routes
        }
        self._server: grpc.aio.Server | None = None
        idle = config.stream_idle_timeout_seconds
        self._idle = idle
        self._idle_ms = None if round(idle * 1000) == DEFAULT_IDLE_MS else str(round(idle * 1000))
        self.waker: Waker | None = None
        """Holds calls while a scaled-to-zero service starts (set by the owner)."""
        self.port: int | None = None
        """The bound port once started (useful when ``grpc_addr`` asks for port 0)."""
        self._unary: set[tuple[str, str]] = set()
        """(service, method) pairs a consumer said are unary: served by :meth:`_unary_call`."""

    def set_dynamic_routes(self, routes: tuple[GRPCRoute, ...]) -> None:
        """Forward the static gRPC routes plus ``routes`` (claimed by services) from now on."""
        table = {r.grpc: (r, self.config.route_timeout(r)) for r in self.config.grpc_routes}
        table.update((r.grpc, (r, self.config.route_timeout(r))) for r in routes)
        self._routes = table

    # -- server lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``config.grpc_addr``. Raises ``OSError`` if the address is taken."""
        address = _listen_address(self.config.grpc_addr)
        # No SO_REUSEPORT: a second gateway on the same port must fail, not share it.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self,))
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError:
            raise OSError(f"cannot listen for gRPC on {address} (address in use?)") from None
        await server.start()
        self._server = server
        logger.info("gRPC gateway listening on %s (port %d)", address, self.port)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, let those in flight finish for up to ``grace`` seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    # -- one call ---------------------------------------------------------------------

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        """Every method gets a raw-bytes handler (``None`` serializers pass bytes through)."""
        method: str = handler_call_details.method
        parts = grpcwire.split_method(method)
        route = self._routes.get(parts[0]) if parts else None
        if route is None and parts is not None and parts[0] == health.SERVICE:
            # Check and Watch are answered here.
            return self._health.get(method)
        if route is not None and (route[0].service, method) in self._unary:
            return grpc.stream_unary_rpc_method_handler(
                functools.partial(self._unary_call, method, route),
                request_deserializer=None,
                response_serializer=None,
            )
        behavior = functools.partial(self._handle, method, route)
        return grpc.stream_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=None
        )

    async def _unary_call(
        self,
        method: str,
        route: tuple[GRPCRoute, float],
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> bytes:
        """A call of a known unary method: forward its one message, answer in one batch.

        The handler is stream-unary rather than unary so that a client that sends no
        message gets the consumer's answer (grpc.aio leaves such a unary call hanging).
        """
        metadata: _Pairs = tuple(context.invocation_metadata() or ())
        record = GatewayGrpcRecord(
            method, route[0].service, metadata, context.peer, self.metrics, self._tracer
        )
        try:
            first = await context.read()
            no_message = first is _EOF
            payload = b"" if no_message else bytes(first)
            result = await self._forward(
                method, route, payload, no_message, context, record.span, metadata, offer=False
            )
            # Offered no stream: the reply is a single message.
            outcome = result if isinstance(result, _Outcome) else _INTERNAL
            record.status = outcome.status.code
            if outcome.status.code == StatusCode.UNIMPLEMENTED:
                # Perhaps the method streams now: the next call offers a stream again.
                self._unary.discard((route[0].service, method))
        except asyncio.CancelledError:
            record.status = _ended_status(context)
            raise
        except Exception:
            logger.exception("gRPC %s failed", method)
            outcome = _INTERNAL
            record.status = StatusCode.INTERNAL
        finally:
            record.end()
        await self._close(context, outcome, record.request_id)
        return outcome.data or b""

    async def _handle(
        self,
        method: str,
        route: tuple[GRPCRoute, float] | None,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> None:
        metadata: _Pairs = tuple(context.invocation_metadata() or ())
        # Each call runs in a task of its own: the ID is not reset after it.
        record = GatewayGrpcRecord(
            method,
            None if route is None else route[0].service,
            metadata,
            context.peer,
            self.metrics,
            self._tracer,
        )
        try:
            outcome = await self._call(
                method, route, context, record.span, record.request_id, metadata
            )
            record.status = outcome.status.code
        except asyncio.CancelledError:
            record.status = _ended_status(context)
            raise
        except Exception:
            logger.exception("gRPC %s failed", method)
            outcome = _INTERNAL
            record.status = StatusCode.INTERNAL
        finally:
            record.end()
        await self._answer(context, outcome, record.request_id)

    async def _call(
        self,
        method: str,
        route: tuple[GRPCRoute, float] | None,
        context: grpc.aio.ServicerContext[bytes, bytes],
        span: Span | None,
        rid: str,
        metadata: _Pairs,
    ) -> _Outcome:
        if route is None:
            parts = grpcwire.split_method(method)
            what = f"service {parts[0]}" if parts else f"method {method}"
            return _Outcome(
                GRPCStatus(StatusCode.UNIMPLEMENTED, f"{what} is not routed by this gateway")
            )
        first = await context.read()
        no_message = first is _EOF
        payload = b"" if no_message else bytes(first)
        forward = asyncio.ensure_future(
            self._forward(method, route, payload, no_message, context, span, metadata)
        )
        more = None if no_message else asyncio.ensure_future(context.read())
        try:
            if more is not None:
                await asyncio.wait((forward, more), return_when=asyncio.FIRST_COMPLETED)
            result = await forward
            if isinstance(result, StreamChannel):
                return await self._relay(result, context, more, rid)
            if more is None or result.status.code != StatusCode.OK:
                return result  # an error is the answer, whatever the kind of call
            if not more.done():
                await asyncio.wait((more,), timeout=_HALF_CLOSE_WAIT)
            if not more.done() or (
                not more.cancelled() and more.exception() is None and more.result() is not _EOF
            ):
                # The client is still sending: a streaming call the consumer answered once.
                return _Outcome(GRPCStatus(StatusCode.UNIMPLEMENTED, _NO_STREAMS))
            return result
        finally:
            for task in (forward, more):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (forward, more) if t), return_exceptions=True)

    async def _relay(
        self,
        channel: StreamChannel,
        context: grpc.aio.ServicerContext[bytes, bytes],
        more: asyncio.Future[Any] | None,
        rid: str,
    ) -> _Outcome:
        sent = False

        async def send_initial(initial: Metadata) -> None:
            nonlocal sent
            sent = True
            await context.send_initial_metadata(_initial(initial, rid))

        channel.start(self._idle)
        active = None if self.metrics is None else self.metrics.active_streams
        if active is not None:
            active.inc()
        try:
            status = await relay(channel, context, pending=[], more=more, send_initial=send_initial)
        finally:
            if active is not None:
                active.dec()
        return _Outcome(status, initial_sent=sent)

    async def _forward(
        self,
        method: str,
        route: tuple[GRPCRoute, float],
        payload: bytes,
        no_message: bool,
        context: grpc.aio.ServicerContext[bytes, bytes],
        span: Span | None,
        pairs: _Pairs,
        *,
        offer: bool = True,
    ) -> _Outcome | StreamChannel:
        """Send the call's first message over NATS; its answer, or the stream it opened.

        ``offer``: offer a stream (the method's kind is unknown); a consumer that says
        the method is unary gets its later calls on the unary path.
        """
        service = route[0].service
        requester = self._requester()
        if requester is None:
            return _error(NotConnected("gateway has no NATS connection"))
        budget = route[1]
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                return _Outcome(GRPCStatus(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            budget = min(budget, remaining)
        rid = requestid.current.get() or requestid.new_request_id()
        metadata: Metadata = grpcwire.forwardable(pairs)
        # The servicer sees the call's ID (a malformed one from the client is replaced).
        metadata = (*(m for m in metadata if m.key != _RID), Metadatum(_RID, rid))
        headers = grpcwire.encode_request(
            method=method,
            metadata=metadata,
            timeout=budget,
            client_addr=grpcwire.peer_address(context.peer()),
            request_id=rid,
        )
        if offer:
            # A consumer takes the stream only for a streaming method.
            headers[wire.STREAM] = _WINDOW
            if self._idle_ms is not None:
                headers[wire.STREAM_IDLE_MS] = self._idle_ms
            if remaining is not None:
                headers[wire.GRPC_DEADLINE_MS] = wire.format_timeout(remaining)
        if no_message:
            headers[wire.GRPC_NO_MESSAGE] = "1"
        try:
            with tracing.sending(self._tracer, span, service, headers, len(payload)):
                retry = self.config.retry_seconds
                if self.waker is None:
                    reply = await requester.call(
                        service, payload, headers, budget, retry, body_follows=offer
                    )
                else:
                    reply = await call_waking(
                        requester,
                        self.waker,
                        service,
                        payload,
                        headers,
                        budget,
                        retry,
                        body_follows=offer,
                    )
        except PayloadTooLarge as exc:
            logger.warning("gRPC %s -> %s: %s", method, service, exc)
            return _error(exc)
        except NarunError as exc:
            self._observe_nats(service, "timeout" if isinstance(exc, RequestTimeout) else "error")
            logger.warning("gRPC %s -> %s: %s", method, service, exc)
            return _error(exc)
        self._observe_nats(service, "success")
        if offer and reply.headers:
            if wire.STREAM_CREDIT in reply.headers:
                channel = requester.stream_of(reply)
                if channel is not None:
                    return channel
            if reply.headers.get(wire.GRPC_UNARY) == "1":
                self._learn_unary(service, method)
        try:
            status = grpcwire.decode_reply(reply.headers)
        except GRPCWireError as exc:
            logger.warning("gRPC %s -> %s: malformed reply: %s", method, service, exc)
            return _error(BadBackendReply(str(exc)))
        if status.code != StatusCode.OK:
            logger.debug("gRPC %s -> %s: %s", method, service, grpcwire.code_name(status.code))
            return _Outcome(status)
        return _Outcome(status, reply.data)

    def _learn_unary(self, service: str, method: str) -> None:
        if len(self._unary) >= _MAX_UNARY:
            self._unary.clear()
        self._unary.add((service, method))

    def _observe_nats(self, service: str, status: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_nats(service, status)

    @staticmethod
    async def _answer(
        context: grpc.aio.ServicerContext[bytes, bytes], outcome: _Outcome, rid: str
    ) -> None:
        await GRPCGateway._close(context, outcome, rid)
        if outcome.data is not None:
            await context.write(outcome.data)

    @staticmethod
    async def _close(
        context: grpc.aio.ServicerContext[bytes, bytes], outcome: _Outcome, rid: str
    ) -> None:
        """Initial metadata (unless already sent), then a failure status as an abort, or
        the trailing metadata of a success; the message itself is the caller's."""
        status = outcome.status
        trailing = grpcwire.forwardable(status.trailing_metadata)
        if not outcome.initial_sent:
            await context.send_initial_metadata(_initial(status.initial_metadata, rid))
        if status.code != StatusCode.OK:
            await context.abort(grpc.StatusCode[status.code.name], status.message, trailing)
        if trailing:
            context.set_trailing_metadata(trailing)


def _ended_status(context: grpc.aio.ServicerContext[bytes, bytes]) -> StatusCode:
    """The status of a call cancelled under the gateway: its deadline passed, or the
    client cancelled it."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0
    return StatusCode.DEADLINE_EXCEEDED if expired else StatusCode.CANCELLED


def _initial(metadata: Metadata, rid: str) -> Metadata:
    """The servicer's initial metadata for the client, with the call's ID in place of any."""
    return (
        *(m for m in grpcwire.forwardable(metadata) if m.key != _RID),
        Metadatum(_RID, rid),
    )
