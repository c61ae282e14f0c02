"""NATS request/reply for the gateway: one reply subscription, a futures map, a timer each.

nats-py's ``Client.request`` does the same multiplexing but wraps every wait in
``asyncio.wait_for``; this keeps the hot path to one future and one timer handle, and
turns every outcome into a reply or a :class:`narun.errors.NarunError`.

Requests are published by :func:`narun.transport.direct.publish` (or, for the HTTP fast
path, :func:`encode_hpub` straight into nats-py's command buffer) rather than
``Client.publish``, which re-validates the subject, the reply subject and every header
name with regular expressions and goes through five coroutine calls per message: that
was a tenth of the gateway's CPU per request. The subjects are ours (validated service
names, our inbox) and header values get the same CR/LF treatment as in nats-py. If the
installed nats-py lacks the internals used, ``Client.publish`` is used instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, OutboundBufferLimitError

from narun.errors import NarunError, NoResponders, NotConnected, PayloadTooLarge, RequestTimeout
from narun.protocol import wire
from narun.protocol.nats import encode_hpub, header_size, parse_header_block
from narun.protocol.stream import WINDOW, StreamState
from narun.protocol.wire import OVERLOADED
from narun.transport.direct import DirectDispatch, fast_publish, publish, write_now
from narun.transport.stream import StreamChannel

__all__ = ["Requester"]

logger = logging.getLogger(__name__)

_STATUS = "Status"
_NO_RESPONDERS = "503"

OnReply = Callable[["Msg | NarunError"], None]
"""What :meth:`Requester.send` calls once: with the reply, or the error that ended the wait."""


class Requester:
    """Sends NATS requests on one connection and awaits their replies."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        # Requests sent with send(): their reply callback and timeout timer.
        self._callbacks: dict[str, tuple[OnReply, asyncio.TimerHandle]] = {}
        self._streams: dict[str, StreamChannel] = {}
        # Streamed replies not yet taken by their caller (see stream_of).
        self._claims: dict[str, StreamChannel] = {}
        # Requests whose streamed reply also carries a streamed request body (gRPC calls).
        self._body_tokens: set[str] = set()
        self._ids = itertools.count()
        self._sid: int | None = None

    async def start(self) -> None:
        """Subscribe the reply wildcard. nats-py re-subscribes it after a reconnect."""
        self._prefix = self.nc.new_inbox() + "."
        self._direct = DirectDispatch.of(self.nc)
        self._sid = await self._direct.subscribe(self._prefix + "*", self._on_direct)

    async def stop(self) -> None:
        """Fail every waiting request and drop the reply subscription."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnected("gateway is shutting down"))
        self._pending.clear()
        callbacks, self._callbacks = self._callbacks, {}
        for on_reply, timer in callbacks.values():
            timer.cancel()
            on_reply(NotConnected("gateway is shutting down"))
        for channel in list(self._streams.values()):
            channel.close()
        sid, self._sid = self._sid, None
        if sid is not None:
            await self._direct.unsubscribe(sid)

    def _on_direct(self, subject: bytes, reply: bytes, data: bytes, raw: bytes) -> None:
        # Straight from nats-py's parser (narun.transport.direct): no pending queue, no
        # subscription task. A stream's frames go to its channel as they are; else the
        # Msg is what nats-py would have made.
        if self._streams:
            channel = self._streams.get(subject[len(self._prefix) :].decode())
            if channel is not None and channel.peer is not None:
                channel.feed_frame(data)
                return
        headers = parse_header_block(raw)[0] or None if raw else None
        msg = Msg(self.nc, subject.decode(), reply.decode(), data, headers)
        self._on_reply(msg)

    def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        if self._streams:
            channel = self._streams.get(token)
            if channel is not None:
                channel.feed(msg)
                return
        fut = self._pending.pop(token, None)
        if fut is not None and not fut.done():
            self._claim_stream(token, msg)
            fut.set_result(msg)
            return
        entry = self._callbacks.pop(token, None) if self._callbacks else None
        if entry is not None:
            on_reply, timer = entry
            timer.cancel()
            self._claim_stream(token, msg)
            on_reply(msg)

    def _claim_stream(self, token: str, msg: Msg) -> None:
        hdrs = msg.headers
        if hdrs and wire.STREAM_CREDIT in hdrs and msg.reply:
            # A streamed reply: its frames follow on this subject. The channel exists
            # before the next message is delivered (this callback runs serially).
            streamed = bool(self._body_tokens) and token in self._body_tokens
            channel = self._channel(token, body_streamed=streamed)
            self._claims[token] = channel
            channel.feed(msg)

    def _channel(self, token: str, *, body_streamed: bool) -> StreamChannel:
        state = StreamState(is_gateway=True, body_streamed=body_streamed, window=WINDOW)
        channel = StreamChannel(
            self.nc,
            state,
            inbox=self._prefix + token,
            peer=None,
            on_close=lambda _: self._streams.pop(token, None),
        )
        self._streams[token] = channel
        return channel

    def stream_of(self, reply: Msg) -> StreamChannel | None:
        """The stream a reply opened (it carried ``Narun-Stream-Credit``), if it did.

        The caller of :meth:`request` must take it when the reply has that header.
        """
        return self._claims.pop(reply.subject[len(self._prefix) :], None)

    @property
    def active_streams(self) -> int:
        """Streams open right now."""
        return len(self._streams)

    async def open_stream(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> StreamChannel:
        """Send a request whose body follows as frames; return its channel.

        Await :meth:`StreamChannel.wait_head` for the reply (a HEAD frame, or a single
        message such as NATS no-responders); :meth:`StreamChannel.write` the body.
        """
        nc = self.nc
        if not nc.is_connected:
            raise NotConnected("not connected to NATS")
        self.check_size(payload, headers)
        token = "s" + str(next(self._ids))
        channel = self._channel(token, body_streamed=True)
        try:
            await nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except Exception as exc:
            channel.close()
            if isinstance(exc, MaxPayloadError):
                raise PayloadTooLarge(str(exc)) from None
            if isinstance(exc, OutboundBufferLimitError):
                raise NotConnected("not connected to NATS") from None
            raise NarunError(f"publish failed: {exc!r}") from None
        return channel

    def cancel(self, service: str, reply: str) -> None:
        """Tell the instances of ``service`` to cancel the request with reply ``reply``."""
        if self.nc.is_connected:
            task = asyncio.get_running_loop().create_task(
                self.nc.publish(wire.cancel_subject(service), reply.encode())
            )
            task.add_done_callback(_ignore_result)

    def _expire(self, token: str) -> None:
        fut = self._pending.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestTimeout(f"no reply within the timeout ({token})"))

    def send(
        self, subject: str, block: bytes, payload: bytes, timeout: float, on_reply: OnReply
    ) -> str:
        """Publish a request now, without a task or a future; return its token.

        ``block`` is the request's NATS header block (:func:`header_block`). ``on_reply``
        is called once, from the reply subscription, with the reply message (a
        no-responders status message included: the caller decides), or after
        ``timeout`` seconds with :class:`RequestTimeout`, or with :class:`NotConnected`
        on :meth:`stop`; never if :meth:`forget` comes first. The message joins
        nats-py's command buffer, so the requests of one loop step leave in one write.
        Raises :class:`PayloadTooLarge`, :class:`NotConnected` or :class:`NarunError`
        at once when the request cannot be sent; ``on_reply`` is then never called.
        """
        nc = self.nc
        if not fast_publish(nc) or not nc.is_connected:
            raise NotConnected("not connected to NATS")
        if nc.is_draining_pubs:
            raise NarunError("NATS connection is draining")
        size = len(block) + len(payload)
        if size > nc.max_payload:
            raise PayloadTooLarge(f"{size} bytes > max_payload {nc.max_payload}")
        token = str(next(self._ids))
        command = encode_hpub(subject, self._prefix + token, block, payload)
        timer = asyncio.get_running_loop().call_later(timeout, self._expire_callback, token)
        self._callbacks[token] = (on_reply, timer)
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += len(payload)
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        if len(self._callbacks) == 1 and not self._pending and write_now(nc):
            # The only request in flight: written now, not one loop turn later by the
            # flusher (a wake-up less at one connection). Under load the requests of
            # one loop step still leave together through the flusher.
            return token
        queue = nc._flush_queue
        if queue is not None and queue.empty():
            # What Client._flush_pending does, without a coroutine: wake the flusher,
            # which writes everything buffered in this loop step at once.
            queue.put_nowait(asyncio.get_running_loop().create_future())
        return token

    def forget(self, token: str, service: str) -> None:
        """Stop waiting for the reply to the :meth:`send` request ``token``.

        The instances of ``service`` are told to cancel it, and a stream its reply
        opened but nobody took is closed.
        """
        entry = self._callbacks.pop(token, None)
        if entry is not None:
            entry[1].cancel()
        self.cancel(service, self._prefix + token)
        unclaimed = self._claims.pop(token, None)
        if unclaimed is not None:
            unclaimed.close()

    def _expire_callback(self, token: str) -> None:
        entry = self._callbacks.pop(token, None)
        if entry is not None:
            entry[0](RequestTimeout(f"no reply within the timeout ({token})"))

    def check_size(self, payload: bytes, headers: dict[str, str] | None) -> None:
        """Raise :class:`PayloadTooLarge` if the message cannot fit in ``max_payload``."""
        size = len(payload) + header_size(headers)
        if size > self.nc.max_payload:
            raise PayloadTooLarge(f"{size} bytes > max_payload {self.nc.max_payload}")

    async def request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        body_follows: bool = False,
    ) -> Msg:
        """Send a request and return the reply message.

        ``body_follows``: if the reply opens a stream, the request's body continues in
        it too (a gRPC call's further request messages, ended by an END frame).
        Raises NotConnected (fast, while NATS is down), PayloadTooLarge, RequestTimeout,
        NoResponders, or NarunError for any other transport failure.
        """
        nc = self.nc
        if not nc.is_connected:
            raise NotConnected("not connected to NATS")
        self.check_size(payload, headers)
        token = str(next(self._ids))
        reply = self._prefix + token
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = fut
        if body_follows:
            self._body_tokens.add(token)
        timer = loop.call_later(timeout, self._expire, token)
        try:
            try:
                await publish(nc, subject, payload, reply=reply, headers=headers)
            except MaxPayloadError as exc:
                raise PayloadTooLarge(str(exc)) from None
            except OutboundBufferLimitError:
                raise NotConnected("not connected to NATS") from None
            except NarunError:
                raise
            except Exception as exc:
                raise NarunError(f"publish failed: {exc!r}") from None
            try:
                msg = await fut
            except asyncio.CancelledError:
                if headers and wire.STREAM in headers:
                    # The caller gave up (its client went away): the consumer may stop.
                    self.cancel(subject, reply)
                    unclaimed = self._claims.pop(token, None)
                    if unclaimed is not None:
                        unclaimed.close()
                raise
        finally:
            timer.cancel()
            self._pending.pop(token, None)
            if body_follows:
                self._body_tokens.discard(token)
        hdrs = msg.headers
        if hdrs is not None and not msg.data and hdrs.get(_STATUS) == _NO_RESPONDERS:
            raise NoResponders(f"no responders on {subject}")
        return msg

    async def call(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        retry: float,
        *,
        body_follows: bool = False,
    ) -> Msg:
        """:meth:`request`, retried while no consumer has taken the request.

        Only two outcomes are retried, both meaning no consumer ran the request: NATS
        no-responders, and a reply marked ``Narun-Overloaded``. Retries back off from
        25 ms to 200 ms, stop ``retry`` seconds after the first attempt, and never go
        past ``timeout``. A timeout or any other reply is final: the request may have
        run, so sending it again could run it twice.
        """
        if retry <= 0:
            return await self.request(subject, payload, headers, timeout, body_follows=body_follows)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        retry_until = start + min(retry, timeout)
        delay = 0.025
        while True:
            try:
                msg = await self.request(
                    subject, payload, headers, deadline - loop.time(), body_follows=body_follows
                )
            except NoResponders:
                if loop.time() + delay > retry_until:
                    raise
            else:
                hdrs = msg.headers
                if hdrs is None or OVERLOADED not in hdrs or loop.time() + delay > retry_until:
                    return msg
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("cancel message not sent: %r", task.exception())
