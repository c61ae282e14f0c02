"""The stream side of one HTTP request on the consumer (docs/protocol.md, *Streams*).

An :class:`Exchange` exists for every request whose gateway reads streamed replies
(``Narun-Stream``). It stays idle, and costs nothing on the wire, while the response
fits the single-message form; the ASGI bridge opens the stream only when the app shows
that it streams (a body message with ``more_body``) or when the body is too large for
one message. A request whose body is streamed (it came on ``<service>.stream``) opens
the stream at once, to grant the gateway credit for the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from narun.protocol import wire
from narun.protocol.stream import StreamError, StreamState
from narun.transport.stream import StreamChannel, StreamHub

__all__ = ["Exchange"]

logger = logging.getLogger(__name__)


class Exchange:
    """One request's stream, opened on demand (see the module doc).

    ``reply`` is the gateway inbox (the request's reply subject), ``credit`` the
    gateway's ``Narun-Stream`` value, ``idle`` the stream idle timeout in seconds.
    ``task`` (the request's) is cancelled when the stream is aborted (the gateway went
    away, a frame was lost, the peer fell silent). ``on_head`` is called once the head
    is sent (the request deadline no longer applies). ``single_limit`` is the largest
    response body sent in the single-message form. Made for every request of a gateway
    that reads streams, so it is kept cheap: slots, nothing computed.
    """

    __slots__ = (
        "body_streamed",
        "channel",
        "credit",
        "head_sent",
        "hub",
        "idle",
        "on_head",
        "reply",
        "single_limit",
        "task",
    )

    def __init__(
        self,
        hub: StreamHub,
        reply: str,
        credit: int,
        idle: float,
        body_streamed: bool,
        task: asyncio.Task[object],
        single_limit: int,
    ) -> None:
        self.hub = hub
        self.reply = reply
        self.credit = credit
        self.idle = idle
        self.body_streamed = body_streamed
        self.task = task
        self.on_head: Callable[[], None] | None = None
        self.channel: StreamChannel | None = None
        self.head_sent = False
        self.single_limit = single_limit

    def open(self) -> StreamChannel:
        """The stream's channel, opened now if it was not yet."""
        channel = self.channel
        if channel is None:
            state = StreamState(
                is_gateway=False, body_streamed=self.body_streamed, peer_credit=self.credit
            )
            grant = state.granted if self.body_streamed else 0
            channel = self.hub.open(
                state,
                peer=self.reply,
                idle=self.idle,
                first_headers={wire.STREAM_CREDIT: str(grant)},
                on_abort=self._aborted,
            )
            channel.start()
            self.channel = channel
        return channel

    def _aborted(self, error: StreamError) -> None:
        self.task.cancel()

    async def start_body(self) -> None:
        """Grant the gateway credit for a streamed request body (its first message)."""
        await self.open().send_credit()

    async def read_body(self) -> bytes | None:
        """The next piece of a streamed request body; None at its end."""
        return await self.open().read()

    async def send_head(self, head: bytes, *, fin: bool) -> None:
        """Send the response head (a Binary HTTP response with the first body part)."""
        channel = self.open()
        self.head_sent = True
        if self.on_head is not None:
            self.on_head()
        await channel.send_head(head, fin=fin)

    async def write(self, data: bytes) -> None:
        """Send more of the response body (waits for the gateway's credit)."""
        if data:
            await self.open().write(data)

    async def end(self) -> None:
        """The response body is complete."""
        await self.open().end()

    async def abort(self, code: int, reason: str) -> None:
        """Abandon the stream and tell the gateway (if it was opened)."""
        if self.channel is not None:
            await self.channel.abort(code, reason)

    def close(self) -> None:
        """Forget the stream (it has ended or was aborted)."""
        if self.channel is not None:
            self.channel.close()

    @property
    def bytes_in(self) -> int:
        """Request body bytes received as frames."""
        return 0 if self.channel is None else self.channel.bytes_in

    @property
    def bytes_out(self) -> int:
        """Response body bytes sent as frames."""
        return 0 if self.channel is None else self.channel.bytes_out
