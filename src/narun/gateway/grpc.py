"""The gRPC side of the gateway: a ``grpc.aio`` server that forwards unary calls over NATS.

One generic handler takes every method. The fully-qualified service of
``/pkg.Service/Method`` picks the route; the raw request message becomes the NATS
payload, and the method, the client's metadata, deadline and address go in NATS headers
(``narun.protocol.grpcwire``). The reply's status, message and metadata reach the client as the
servicer set them. Every call ends with a definite status; nothing internal reaches the
client.

Streaming: the handler is registered as stream-unary so that it sees how many request
messages the client sends (a grpc.aio unary handler leaves a client stream without
messages hanging until its deadline). A call with no request message or with a second
one ends UNIMPLEMENTED; a call with exactly one message is forwarded as unary, and a
Python consumer answers UNIMPLEMENTED if the method is a streaming one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

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
from narun.gateway.wake import Waker, call_waking
from narun.observe import requestid, tracing
from narun.observe.metrics import GatewayMetrics
from narun.observe.record import GatewayGrpcRecord
from narun.protocol import grpcwire
from narun.protocol.grpcwire import GRPCStatus, GRPCWireError, Metadata, Metadatum, StatusCode
from narun.transport.requester import Requester

__all__ = ["GRPCGateway"]

logger = logging.getLogger(__name__)

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
_ONE_MESSAGE = "narun forwards unary calls: exactly one request message is required"
_RID = requestid.HEADER.decode()
_Pairs = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: GRPCStatus
    data: bytes = b""


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
        self._health = health.check_handler(
            is_ready or (lambda: (self._requester() is not None, "")),
            {r.grpc for r in config.grpc_routes},
        )
        self._routes: dict[str, tuple[GRPCRoute, float]] = {
            r.grpc: (r, config.route_timeout(r)) for r in config.grpc_routes
        }
        self._server: grpc.aio.Server | None = None
        self.waker: Waker | None = None
        """Holds calls while a scaled-to-zero service starts (set by the owner)."""
        self.port: int | None = None
        """The bound port once started (useful when ``grpc_addr`` asks for port 0)."""

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
            # Check is answered here; Watch (None) is UNIMPLEMENTED.
            return self._health if method == health.CHECK else None
        behavior = functools.partial(self._handle, method, route)
        return grpc.stream_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=None
        )

    async def _handle(
        self,
        method: str,
        route: tuple[GRPCRoute, float] | None,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> bytes:
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
            outcome = await self._call(method, route, context, record.span)
            record.status = outcome.status.code
        except asyncio.CancelledError:
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            record.status = StatusCode.DEADLINE_EXCEEDED if expired else StatusCode.CANCELLED
            raise
        except Exception:
            logger.exception("gRPC %s failed", method)
            outcome = _Outcome(GRPCStatus(StatusCode.INTERNAL, "Internal server error"))
            record.status = StatusCode.INTERNAL
        finally:
            record.end()
        return await self._answer(context, outcome, record.request_id)

    async def _call(
        self,
        method: str,
        route: tuple[GRPCRoute, float] | None,
        context: grpc.aio.ServicerContext[bytes, bytes],
        span: Span | None,
    ) -> _Outcome:
        if route is None:
            parts = grpcwire.split_method(method)
            what = f"service {parts[0]}" if parts else f"method {method}"
            return _Outcome(
                GRPCStatus(StatusCode.UNIMPLEMENTED, f"{what} is not routed by this gateway")
            )
        first = await context.read()
        if first is _EOF:
            return _Outcome(GRPCStatus(StatusCode.UNIMPLEMENTED, _ONE_MESSAGE))
        # Forward at once, and watch for a second request message meanwhile: a unary
        # client half-closes right after its message, a streaming one may not.
        forward = asyncio.ensure_future(self._forward(method, route, first, context, span))
        more = asyncio.ensure_future(context.read())
        try:
            await asyncio.wait((forward, more), return_when=asyncio.FIRST_COMPLETED)
            # A failed read is the transport's business (it ends the call itself).
            if more.done() and more.exception() is None and more.result() is not _EOF:
                return _Outcome(GRPCStatus(StatusCode.UNIMPLEMENTED, _ONE_MESSAGE))
            return await forward
        finally:
            for task in (forward, more):
                if not task.done():
                    task.cancel()
            await asyncio.gather(forward, more, return_exceptions=True)

    async def _forward(
        self,
        method: str,
        route: tuple[GRPCRoute, float],
        payload: bytes,
        context: grpc.aio.ServicerContext[bytes, bytes],
        span: Span | None,
    ) -> _Outcome:
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
        metadata: Metadata = grpcwire.forwardable(context.invocation_metadata() or ())
        # The servicer sees the call's ID (a malformed one from the client is replaced).
        metadata = (*(m for m in metadata if m.key != _RID), Metadatum(_RID, rid))
        headers = grpcwire.encode_request(
            method=method,
            metadata=metadata,
            timeout=budget,
            client_addr=grpcwire.peer_address(context.peer()),
            request_id=rid,
        )
        try:
            with tracing.sending(self._tracer, span, service, headers, len(payload)):
                retry = self.config.retry_seconds
                if self.waker is None:
                    reply = await requester.call(service, payload, headers, budget, retry)
                else:
                    reply = await call_waking(
                        requester, self.waker, service, payload, headers, budget, retry
                    )
        except PayloadTooLarge as exc:
            logger.warning("gRPC %s -> %s: %s", method, service, exc)
            return _error(exc)
        except NarunError as exc:
            self._observe_nats(service, "timeout" if isinstance(exc, RequestTimeout) else "error")
            logger.warning("gRPC %s -> %s: %s", method, service, exc)
            return _error(exc)
        self._observe_nats(service, "success")
        try:
            status = grpcwire.decode_reply(reply.headers)
        except GRPCWireError as exc:
            logger.warning("gRPC %s -> %s: malformed reply: %s", method, service, exc)
            return _error(BadBackendReply(str(exc)))
        if status.code != StatusCode.OK:
            logger.debug("gRPC %s -> %s: %s", method, service, grpcwire.code_name(status.code))
            return _Outcome(status)
        return _Outcome(status, reply.data)

    def _observe_nats(self, service: str, status: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_nats(service, status)

    @staticmethod
    async def _answer(
        context: grpc.aio.ServicerContext[bytes, bytes], outcome: _Outcome, rid: str
    ) -> bytes:
        status = outcome.status
        # The call's ID goes back in the initial metadata, in place of any the servicer set.
        initial = (
            *(m for m in grpcwire.forwardable(status.initial_metadata) if m.key != _RID),
            Metadatum(_RID, rid),
        )
        trailing = grpcwire.forwardable(status.trailing_metadata)
        await context.send_initial_metadata(initial)
        if status.code != StatusCode.OK:
            await context.abort(grpc.StatusCode[status.code.name], status.message, trailing)
        if trailing:
            context.set_trailing_metadata(trailing)
        return outcome.data
