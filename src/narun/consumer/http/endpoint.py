"""The NATS side of an HTTP consumer: Binary HTTP in, app call, Binary HTTP out."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from narun.consumer.deadlines import DeadlineWheel
from narun.consumer.http.asgi import ASGIBridge, parse_client
from narun.consumer.service import OVERLOADED, Reply, error_reply
from narun.errors import BinaryHTTPError
from narun.observe import tracing
from narun.observe.metrics import RequestRecorder
from narun.observe.record import ConsumerHttpRecord
from narun.protocol import wire
from narun.protocol.bhttp import Response, decode_request, encode_response
from narun.protocol.textreply import RETRY_AFTER, Field, plain_text

__all__ = ["HTTPEndpoint", "refuse"]

logger = logging.getLogger(__name__)

_BAD_REQUEST = error_reply(400, "Failed to decode Binary HTTP request")
_DEADLINE = error_reply(504, "Request deadline exceeded")


def _plain(status: int, text: str, *extra: Field) -> bytes:
    headers, body = plain_text(text, extra)
    return encode_response(Response(status, tuple(headers), body))


# A Go gateway reads no ADR-32 error headers (a reply without Binary HTTP becomes its
# 502): requests from one get the same answers as Binary HTTP responses it relays.
_GO_DEADLINE = Reply(_plain(504, "Request deadline exceeded"), error="Request deadline exceeded")
_GO_OVERLOADED = Reply(_plain(503, "Service overloaded", RETRY_AFTER), error="Service overloaded")


def refuse(msg: Msg) -> Reply:
    """How a full instance refuses ``msg``: ADR-32 503 for narun gateways, else Binary HTTP."""
    return OVERLOADED if wire.from_narun_gateway(msg.headers) else _GO_OVERLOADED


class HTTPEndpoint:
    """Handler of the ``handler`` endpoint: one Binary HTTP request per NATS message.

    Per request it also sets the request ID (``Narun-Request-Id``, or a new one) for
    the log, opens the consumer's trace span when tracing is on, records ``metrics``
    (if given) and writes the access log line.
    """

    def __init__(
        self,
        bridge: ASGIBridge,
        *,
        metrics: RequestRecorder | None = None,
        default_deadline: float | None = None,
    ) -> None:
        self.bridge = bridge
        self.metrics = metrics
        self.default_deadline = default_deadline or None
        """Seconds a request without ``Narun-Timeout-Ms`` may run (None: no bound)."""
        # The caller's deadline (Narun-Timeout-Ms) bounds each request. One timer wheel
        # for all of them: asyncio.timeout's timer per request costs more than the
        # request itself; a few milliseconds of lateness do not matter here.
        self._deadlines = DeadlineWheel()
        self._tracer = tracing.LazyTracer("narun.consumer")

    async def __call__(self, msg: Msg) -> Reply:
        """Decode, serve, encode. Never raises for bad input."""
        headers = msg.headers or {}
        # Each request runs in a task of its own (MicroService): the ID stays set for
        # the last log lines about it, and goes with the task.
        record = ConsumerHttpRecord(headers, msg.subject, len(msg.data), self.metrics, self._tracer)
        try:
            try:
                request = record.request = decode_request(msg.data)
            except BinaryHTTPError as exc:
                logger.warning("undecodable request on %s: %s", msg.subject, exc)
                record.status = 400
                return _BAD_REQUEST
            client = parse_client(headers.get(wire.CLIENT_ADDR))
            # With tracing on, the app's own instrumentation reads our span from the
            # traceparent field (the client's field goes no further than our spans).
            fields = None if record.span is None else tracing.app_trace_headers()
            rid = record.request_id
            budget = wire.parse_timeout(headers.get(wire.TIMEOUT_MS))
            if budget is None:
                budget = self.default_deadline  # a Go gateway sends no deadline
            if budget is None:
                response = await self.bridge(request, client=client, request_id=rid, trace=fields)
            else:
                try:
                    with self._deadlines.after(budget):
                        response = await self.bridge(
                            request, client=client, request_id=rid, trace=fields
                        )
                except TimeoutError:
                    logger.warning(
                        "%s %s gave up after the caller's %.3fs deadline",
                        request.method,
                        request.path,
                        budget,
                    )
                    record.status = 504
                    return _DEADLINE if wire.from_narun_gateway(headers) else _GO_DEADLINE
            status = record.status = response.status
            error = f"HTTP {status}" if status >= 500 else None
            return Reply(data=encode_response(response), error=error)
        finally:
            record.end()
