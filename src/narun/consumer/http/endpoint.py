"""The NATS side of an HTTP consumer: Binary HTTP in, app call, Binary HTTP out."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from narun.consumer.deadlines import DeadlineWheel
from narun.consumer.http.asgi import STREAMED, ASGIBridge, parse_client
from narun.consumer.http.streaming import Exchange
from narun.consumer.service import OVERLOADED, Reply, error_reply
from narun.errors import BinaryHTTPError
from narun.observe import tracing
from narun.observe.metrics import RequestRecorder
from narun.observe.record import ConsumerHttpRecord
from narun.protocol import wire
from narun.protocol.bhttp import Response, decode_request, encode_response
from narun.protocol.stream import ABORT_IDLE, DEFAULT_IDLE_MS, StreamError
from narun.protocol.textreply import RETRY_AFTER, Field, plain_text
from narun.transport.stream import StreamHub

__all__ = ["HTTPEndpoint", "refuse"]

logger = logging.getLogger(__name__)

_BAD_REQUEST = error_reply(400, "Failed to decode Binary HTTP request")
_DEADLINE = error_reply(504, "Request deadline exceeded")
_SENT = Reply(sent=True)
_DEFAULT_IDLE = DEFAULT_IDLE_MS / 1000


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
        hub: StreamHub | None = None,
        stream_subject: str | None = None,
    ) -> None:
        self.bridge = bridge
        self.metrics = metrics
        self.default_deadline = default_deadline or None
        """Seconds a request without ``Narun-Timeout-Ms`` may run (None: no bound)."""
        self.hub = hub
        """Where streams get their inboxes; None: never stream (single messages only)."""
        self.stream_subject = stream_subject
        """The subject of requests with a streamed body (``<service>.stream``)."""
        self._running: dict[str, asyncio.Task[object]] = {}
        """Requests the gateway may cancel, by reply subject."""
        self._single_limit: int | None = None
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
        # The span is named after the service, also for <service>.stream requests.
        subject = msg.subject.removesuffix(".stream")
        record = ConsumerHttpRecord(headers, subject, len(msg.data), self.metrics, self._tracer)
        exchange: Exchange | None = None
        reply_to = msg.reply
        try:
            try:
                request = record.request = decode_request(msg.data)
            except BinaryHTTPError as exc:
                logger.warning("undecodable request on %s: %s", msg.subject, exc)
                record.status = 400
                return _BAD_REQUEST
            hub = self.hub
            credit = None if hub is None else wire.parse_window(headers.get(wire.STREAM))
            body_streamed = msg.subject == self.stream_subject
            if hub is not None and credit is not None and reply_to:
                exchange = self._exchange(hub, reply_to, credit, headers, body_streamed)
            elif body_streamed:
                logger.warning("streamed request on %s without a Narun-Stream header", msg.subject)
                record.status = 400
                return _BAD_REQUEST
            client = parse_client(headers.get(wire.CLIENT_ADDR))
            # With tracing on, the app's own instrumentation reads our span from the
            # traceparent field (the client's field goes no further than our spans).
            fields = None if record.span is None else tracing.app_trace_headers()
            rid = record.request_id
            budget = wire.parse_timeout(headers.get(wire.TIMEOUT_MS))
            if exchange is not None and body_streamed:
                await exchange.start_body()
            if budget is None:
                budget = self.default_deadline  # a Go gateway sends no deadline
            if budget is None:
                response = await self.bridge(
                    request, client=client, request_id=rid, trace=fields, exchange=exchange
                )
            else:
                try:
                    with self._deadlines.after(budget) as deadline:
                        if exchange is not None:
                            exchange.on_head = deadline.disarm  # the stream's idle timeout rules
                        response = await self.bridge(
                            request, client=client, request_id=rid, trace=fields, exchange=exchange
                        )
                except TimeoutError:
                    logger.warning(
                        "%s %s gave up after the caller's %.3fs deadline",
                        request.method,
                        request.path,
                        budget,
                    )
                    record.status = 504
                    if exchange is not None and exchange.channel is not None:
                        await exchange.abort(ABORT_IDLE, "request deadline exceeded")
                        return _SENT
                    return _DEADLINE if wire.from_narun_gateway(headers) else _GO_DEADLINE
            if response is STREAMED:
                assert exchange is not None
                channel = exchange.channel
                broken = None if channel is None else channel.state.abort_error
                record.status = 499 if broken is not None and broken.remote else 200
                return _SENT
            status = record.status = response.status
            error = f"HTTP {status}" if status >= 500 else None
            if exchange is not None and exchange.channel is not None:
                # The stream is open (a streamed request body): the answer is its head.
                await exchange.send_head(encode_response(response), fin=True)
                return Reply(error=error, sent=True)
            return Reply(data=encode_response(response), error=error)
        except StreamError as exc:
            logger.info("stream of %s ended: %s", msg.subject, exc)
            record.status = 499 if exc.remote else 502
            return _SENT
        except asyncio.CancelledError:
            record.status = 499
            logger.info("request cancelled: the gateway gave up on it")
            raise
        finally:
            if exchange is not None:
                exchange.close()
                if reply_to:
                    self._running.pop(reply_to, None)
                if exchange.channel is not None:
                    # A stream: the access line gets the bytes carried as frames.
                    record.stream = True
                    record.bytes_in, record.bytes_out = exchange.bytes_in, exchange.bytes_out
            record.end()

    def _exchange(
        self,
        hub: StreamHub,
        reply: str,
        credit: int,
        headers: dict[str, str],
        body_streamed: bool,
    ) -> Exchange:
        task = self._deadlines.current_task()  # the wheel keeps the loop: no getpid()
        assert task is not None
        self._running[reply] = task
        idle = wire.parse_timeout(headers.get(wire.STREAM_IDLE_MS))
        if idle is None:
            idle = _DEFAULT_IDLE
        if self._single_limit is None:
            self._single_limit = hub.nc.max_payload - 16 * 1024
        return Exchange(
            hub, reply, credit, max(idle, 0.05), body_streamed, task, self._single_limit
        )

    def cancel(self, reply: str) -> bool:
        """Cancel the running request whose reply subject is ``reply`` (the gateway gave up)."""
        task = self._running.get(reply)
        if task is None:
            return False
        task.cancel()
        return True
