"""NATS request/reply for the gateway: one reply subscription, a futures map, a timer each.

nats-py's ``Client.request`` does the same multiplexing but wraps every wait in
``asyncio.wait_for``; this keeps the hot path to one future and one timer handle, and
turns every outcome into a reply or a :class:`narun.errors.NarunError`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import MaxPayloadError, OutboundBufferLimitError

from narun.errors import NarunError, NoResponders, NotConnected, PayloadTooLarge, RequestTimeout

__all__ = ["Requester", "header_size"]

logger = logging.getLogger(__name__)

_STATUS = "Status"
_NO_RESPONDERS = "503"
# "NATS/1.0\r\n" ... "\r\n": the fixed part of a NATS header block.
_HEADER_OVERHEAD = 12


def header_size(headers: dict[str, str] | None) -> int:
    """Bytes a header map takes on the wire (counts against ``max_payload``)."""
    if not headers:
        return 0
    return _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())


class Requester:
    """Sends NATS requests on one connection and awaits their replies."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._ids = itertools.count()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe the reply wildcard. nats-py re-subscribes it after a reconnect."""
        self._prefix = self.nc.new_inbox() + "."
        self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def stop(self) -> None:
        """Fail every waiting request and drop the reply subscription."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnected("gateway is shutting down"))
        self._pending.clear()
        if self._sub is not None and not self.nc.is_closed:
            await self._sub.unsubscribe()
        self._sub = None

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _expire(self, token: str) -> None:
        fut = self._pending.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestTimeout(f"no reply within the timeout ({token})"))

    def check_size(self, payload: bytes, headers: dict[str, str] | None) -> None:
        """Raise :class:`PayloadTooLarge` if the message cannot fit in ``max_payload``."""
        size = len(payload) + header_size(headers)
        if size > self.nc.max_payload:
            raise PayloadTooLarge(f"{size} bytes > max_payload {self.nc.max_payload}")

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> Msg:
        """Send a request and return the reply message.

        Raises NotConnected (fast, while NATS is down), PayloadTooLarge, RequestTimeout,
        NoResponders, or NarunError for any other transport failure.
        """
        nc = self.nc
        if not nc.is_connected:
            raise NotConnected("not connected to NATS")
        self.check_size(payload, headers)
        token = str(next(self._ids))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = fut
        timer = loop.call_later(timeout, self._expire, token)
        try:
            try:
                await nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            except MaxPayloadError as exc:
                raise PayloadTooLarge(str(exc)) from None
            except OutboundBufferLimitError:
                raise NotConnected("not connected to NATS") from None
            except NarunError:
                raise
            except Exception as exc:
                raise NarunError(f"publish failed: {exc!r}") from None
            msg = await fut
        finally:
            timer.cancel()
            self._pending.pop(token, None)
        hdrs = msg.headers
        if hdrs is not None and not msg.data and hdrs.get(_STATUS) == _NO_RESPONDERS:
            raise NoResponders(f"no responders on {subject}")
        return msg
