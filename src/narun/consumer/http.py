"""The NATS side of an HTTP consumer: Binary HTTP in, app call, Binary HTTP out."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from narun import wire
from narun.bhttp import decode_request, encode_response
from narun.consumer.asgi import ASGIBridge, parse_client
from narun.consumer.deadlines import DeadlineWheel
from narun.consumer.service import Reply, error_reply
from narun.errors import BinaryHTTPError

__all__ = ["HTTPEndpoint"]

logger = logging.getLogger(__name__)

_BAD_REQUEST = error_reply(400, "Failed to decode Binary HTTP request")
_DEADLINE = error_reply(504, "Request deadline exceeded")


class HTTPEndpoint:
    """Handler of the ``handler`` endpoint: one Binary HTTP request per NATS message."""

    def __init__(self, bridge: ASGIBridge) -> None:
        self.bridge = bridge
        # The caller's deadline (Narun-Timeout-Ms) bounds each request. One timer wheel
        # for all of them: asyncio.timeout's timer per request costs more than the
        # request itself; a few milliseconds of lateness do not matter here.
        self._deadlines = DeadlineWheel()

    async def __call__(self, msg: Msg) -> Reply:
        """Decode, serve, encode. Never raises for bad input."""
        try:
            request = decode_request(msg.data)
        except BinaryHTTPError as exc:
            logger.warning("undecodable request on %s: %s", msg.subject, exc)
            return _BAD_REQUEST
        headers = msg.headers or {}
        client = parse_client(headers.get(wire.CLIENT_ADDR))
        budget = wire.parse_timeout(headers.get(wire.TIMEOUT_MS))
        if budget is None:
            response = await self.bridge(request, client=client)
        else:
            try:
                with self._deadlines.after(budget):
                    response = await self.bridge(request, client=client)
            except TimeoutError:
                logger.warning(
                    "%s %s gave up after the caller's %.3fs deadline",
                    request.method,
                    request.path,
                    budget,
                )
                return _DEADLINE
        error = f"HTTP {response.status}" if response.status >= 500 else None
        return Reply(data=encode_response(response), error=error)
