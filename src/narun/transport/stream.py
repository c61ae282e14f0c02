"""Streams over a NATS connection: one end of a stream, and the hub that routes its frames.

:class:`StreamChannel` is one end of a stream (docs/protocol.md, *Streams*): it turns
frames that arrive into body chunks for :meth:`~StreamChannel.read`, sends body bytes
with :meth:`~StreamChannel.write` as the peer's credit allows, grants credit as the
application reads, sends heartbeats while idle and aborts when the peer falls silent.
The bookkeeping is :class:`narun.protocol.stream.StreamState`; this module only moves
bytes and keeps time. It knows nothing of HTTP: the head is opaque bytes.

nats-py runs a subscription's callbacks one after another, so :meth:`StreamChannel.feed`
never blocks: it queues, wakes a waiter and returns. Memory stays bounded because a
peer may not send more than the credit granted, and credit is granted only as the
application reads.

:class:`StreamHub` is a wildcard inbox subscription shared by every stream of one
process (the consumer's side); the gateway routes frames through its
:class:`~narun.transport.requester.Requester`'s reply subscription instead. Both are
:class:`~narun.transport.direct.DirectDispatch` subscriptions: a frame reaches
:meth:`StreamChannel.feed_frame` straight from nats-py's parser. A DATA frame leaves as
one ``PUB`` command joined from the pieces written (see docs/architecture.md, *Streams*).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.protocol import wire
from narun.protocol.nats import pub_line
from narun.protocol.stream import (
    ABORT_BAD_PEER,
    ABORT_IDLE,
    DEFAULT_IDLE_MS,
    FIN,
    FRAME_HEADER,
    Frame,
    Kind,
    StreamError,
    StreamState,
    data_header,
    decode,
    encode,
    encode_data,
    frame_data_size,
)
from narun.transport.direct import DirectDispatch, DirectMsg, fast_publish, publish, send_command

__all__ = ["StreamChannel", "StreamHub"]

logger = logging.getLogger(__name__)

_CLOSED = StreamError(ABORT_BAD_PEER, "stream is closed")


class StreamChannel:
    """One end of a stream on ``nc`` (see the module doc).

    ``inbox`` is where the peer sends its frames; ``peer`` the peer's inbox (None on the
    gateway until the consumer's first message names it). ``first_headers`` go with the
    first frame this end sends (the consumer's ``Narun-Stream-Credit``). ``on_abort`` is called
    once, from the event loop, when the stream is aborted by either side or by the idle
    timeout; ``on_close`` once when the channel is done (to unregister it).
    """

    def __init__(
        self,
        nc: Client,
        state: StreamState,
        *,
        inbox: str,
        peer: str | None,
        idle: float = DEFAULT_IDLE_MS / 1000,
        first_headers: dict[str, str] | None = None,
        on_abort: Callable[[StreamError], None] | None = None,
        on_close: Callable[[StreamChannel], object] | None = None,
    ) -> None:
        self.nc = nc
        self.state = state
        self.inbox = inbox
        self.peer = peer
        self.idle = idle
        self.frame_size = frame_data_size(nc.max_payload)
        self._first_headers = first_headers
        self.on_abort = on_abort
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._writers: list[asyncio.Future[None]] = []
        self._out: deque[bytes | memoryview] = deque()
        """Body bytes written and not yet sent (at most a frame's worth and one write),
        as the pieces written: a frame's command is joined from them in one copy."""
        self._out_size = 0
        self._fast = fast_publish(nc)
        self._flush_task: asyncio.Task[None] | None = None
        self._header: asyncio.Future[Frame | Msg] = self._loop.create_future()
        self._ready: asyncio.Future[bool] = self._loop.create_future()
        if peer is not None:
            self._ready.set_result(True)
        self.head: Frame | None = None
        """The HEAD frame (gateway side), once received."""
        self.bytes_in = 0
        """Body bytes received."""
        self.bytes_out = 0
        """Body bytes sent."""
        self._last_in = self._last_out = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- receiving (called by the subscription, never blocks) ---------------------------

    def feed(self, msg: Msg) -> None:
        """Take one message of the peer's direction."""
        if self._done:
            return
        if self.peer is None:
            # The consumer's first message: a frame only with Narun-Stream-Credit.
            headers = msg.headers
            credit = wire.parse_window(headers.get(wire.STREAM_CREDIT)) if headers else None
            if credit is None or not msg.reply:
                if not self._header.done():
                    self._header.set_result(msg)  # a single-message reply
                self._finish()
                return
            self.peer = msg.reply
            self.state.credit = credit
            if not self._ready.done():
                self._ready.set_result(True)
        self.feed_frame(msg.data)

    def feed_frame(self, data: bytes) -> None:
        """Take one frame of the peer's direction, once the peer's inbox is known (the
        hot path: what :meth:`feed` does after the first message, without a ``Msg``)."""
        if self._done:
            return
        try:
            frame = self.state.receive(decode(data))
        except StreamError as exc:
            self._broken(exc)
            return
        if frame is None:
            return
        self._last_in = self._loop.time()
        kind = frame.kind
        if kind is Kind.DATA:
            self._chunks.append(frame.data)
            self.bytes_in += len(frame.data)
            _wake(self._reader)
        elif kind is Kind.CREDIT:
            self._wake_writers()
        elif kind is Kind.END:
            _wake(self._reader)
            self._maybe_close()
        elif kind is Kind.HEAD:
            self.head = frame
            if not self._header.done():
                self._header.set_result(frame)
            if frame.value & FIN:
                _wake(self._reader)
                self._maybe_close()
        # HEARTBEAT: only _last_in.
        self._wake_writers()  # the first message may have brought credit

    # -- the application's side ---------------------------------------------------------

    async def wait_head(self) -> Frame | Msg:
        """The HEAD frame, or the single-message reply that came instead (gateway side).

        Raises :class:`StreamError` if the stream is aborted first.
        """
        return await self._header

    async def ready(self) -> bool:
        """Wait until the peer's inbox is known; False if the stream ended before."""
        return await self._ready

    def start(self, idle: float | None = None) -> None:
        """Start heartbeats and the idle timeout (``idle`` seconds, if given)."""
        if idle is not None:
            self.idle = idle
        if self._timer is None and not self._done:
            now = self._loop.time()
            self._last_in = self._last_out = now
            self._timer = self._loop.call_later(self.idle / 3, self._tick)

    async def read(self) -> bytes | None:
        """The next body chunk from the peer; None once its body has ended."""
        while not self._chunks:
            error = self.state.abort_error
            if error is not None:
                raise error
            if self.state.in_ended:
                return None
            if self._done:
                raise _CLOSED
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        chunk = self._chunks.popleft()
        grant = self.state.consumed(len(chunk))
        if grant is not None and self.state.abort_error is None and not self._done:
            await self._send(Frame(Kind.CREDIT, self.state.next_seq(), value=grant))
        return chunk

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as DATA frames, waiting for credit as needed.

        Writes smaller than a frame are gathered: what was written during one step of
        the event loop leaves as one frame right after it (an SSE event still goes at
        once), and a writer that produces faster fills whole frames. A write returns
        once less than a frame's worth is left unsent, so memory stays bounded.
        """
        error = self.state.abort_error
        if error is not None:
            raise error
        if self._done:
            raise _CLOSED
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer once we return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= self.frame_size:
            await self._flush(self.frame_size)
        if self._out_size and self._flush_task is None:
            self._flush_task = self._loop.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await self._flush(1)
        except StreamError:
            pass  # the next write or end() reports it
        finally:
            self._flush_task = None

    async def _flush(self, keep_below: int) -> None:
        """Send buffered body bytes until fewer than ``keep_below`` are left."""
        state = self.state
        while self._out_size >= keep_below:
            error = state.abort_error
            if error is not None:
                raise error
            if self._done:
                raise _CLOSED
            n = min(state.credit - state.sent, self.frame_size, self._out_size)
            if n <= 0 or self.peer is None:
                waiter = self._loop.create_future()
                self._writers.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._writers:
                        self._writers.remove(waiter)
                continue
            # Take the bytes and their sequence number in one step: frames leave in order.
            seq = state.next_seq()
            pieces = self._take(n)
            state.sent_data(n)
            self.bytes_out += n
            await self._publish_data(seq, pieces, n)

    def _take(self, n: int) -> list[bytes | memoryview]:
        """The first ``n`` buffered body bytes, as pieces (no copy)."""
        out = self._out
        pieces: list[bytes | memoryview] = []
        need = n
        while need:
            piece = out[0]
            size = len(piece)
            if size <= need:
                pieces.append(out.popleft())
                need -= size
            else:
                view = memoryview(piece)
                pieces.append(view[:need])
                out[0] = view[need:]
                need = 0
        self._out_size -= n
        return pieces

    async def flush(self) -> None:
        """Send whatever is buffered now (waiting for credit as needed)."""
        await self._flush(1)

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for waiter in writers:
            _wake(waiter)

    async def send_head(self, head: bytes, *, fin: bool) -> None:
        """Send the HEAD frame (consumer side); ``fin``: the response is complete."""
        if fin:
            self.state.end_out()
        await self._send(Frame(Kind.HEAD, self.state.next_seq(), head, FIN if fin else 0))
        if fin:
            self._maybe_close()

    async def send_credit(self) -> None:
        """Send the current credit (the consumer's first message of a streamed request)."""
        await self._send(Frame(Kind.CREDIT, self.state.next_seq(), value=self.state.granted))

    async def end(self) -> None:
        """End this end's body (after what is still buffered)."""
        if self.state.abort_error is not None:
            raise self.state.abort_error
        await self._flush(1)
        self.state.end_out()
        await self._send(Frame(Kind.END, self.state.next_seq()))
        self._maybe_close()

    async def abort(self, code: int, reason: str) -> None:
        """Abort the stream: tell the peer (if still open) and stop."""
        if self._done:
            return
        error = self.state.fail(code, reason)
        self._wake_all(error)
        if self.peer is not None:
            await self._send_abort(error)
        self._finish()

    def close(self) -> None:
        """Stop without a word to the peer (the stream has ended or was aborted)."""
        self._finish()

    @property
    def done(self) -> bool:
        """The channel has stopped (ended, aborted or closed)."""
        return self._done

    # -- internals ----------------------------------------------------------------------

    async def _send(self, frame: Frame) -> None:
        await self._publish(encode(frame))

    async def _publish(self, payload: bytes) -> None:
        # The sequence number was taken just before this call and nothing awaits in
        # between, so frames reach nats-py's buffer in the order of their numbers.
        peer = self.peer
        if peer is None:
            return
        self._last_out = self._loop.time()
        headers = self._first_headers
        if headers is not None:
            self._first_headers = None
            await publish(self.nc, peer, payload, reply=self.inbox, headers=headers)
        else:
            await publish(self.nc, peer, payload)

    async def _publish_data(self, seq: int, pieces: list[bytes | memoryview], n: int) -> None:
        """Publish DATA frame ``seq`` with the ``n`` body bytes of ``pieces``: the whole
        ``PUB`` command is joined at once, the body's one copy on this side."""
        peer = self.peer
        if peer is None:
            return
        if not self._fast or self._first_headers is not None:
            await self._publish(encode_data(seq, b"".join(pieces)))
            return
        self._last_out = self._loop.time()
        size = FRAME_HEADER + n
        command = b"".join((pub_line(peer, size), data_header(seq), *pieces, b"\r\n"))
        # A frame is big enough to go to the socket at once (no flusher wake-up, no
        # second join with whatever else is queued).
        await send_command(self.nc, command, size, size, now=True)

    async def _send_abort(self, error: StreamError) -> None:
        try:
            await self._send(
                Frame(Kind.ABORT, self.state.next_seq(), error.reason.encode(), error.code)
            )
        except Exception:
            logger.debug("could not send the abort frame", exc_info=True)

    def _broken(self, error: StreamError) -> None:
        """The stream failed here (protocol error, idle) or the peer aborted it."""
        if self._done:
            return
        self.state.fail(error.code, error.reason, remote=error.remote)
        error = self.state.abort_error or error
        logger.debug("stream %s: %s", self.inbox, error)
        self._wake_all(error)
        if not error.remote and self.peer is not None:
            self._spawn(self._send_abort(error))
        if self.on_abort is not None:
            self.on_abort(error)
        self._finish()

    def _wake_all(self, error: StreamError) -> None:
        if not self._header.done():
            self._header.set_exception(error)
            self._header.exception()  # retrieved: no warning if nobody waits
        _wake(self._reader)
        self._wake_writers()

    def _maybe_close(self) -> None:
        if self.state.closed:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _wake(self._reader)
        self._wake_writers()
        if not self._header.done():
            self._header.set_exception(self.state.abort_error or _CLOSED)
            self._header.exception()
        if not self._ready.done():
            self._ready.set_result(False)
        if self._on_close is not None:
            self._on_close(self)

    def _tick(self) -> None:
        self._timer = None
        if self._done:
            return
        now = self._loop.time()
        if now - self._last_in > self.idle:
            self._broken(StreamError(ABORT_IDLE, f"nothing from the peer for {self.idle:.1f}s"))
            return
        interval = self.idle / 3
        if now - self._last_out >= interval * 0.9 and self.peer is not None:
            self._spawn(self._heartbeat())
        self._timer = self._loop.call_later(interval, self._tick)

    async def _heartbeat(self) -> None:
        if self._done or self.state.abort_error is not None:
            return
        try:
            await self._send(Frame(Kind.HEARTBEAT, self.state.next_seq()))
        except Exception:
            logger.debug("could not send a heartbeat", exc_info=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class StreamHub:
    """Inboxes for any number of streams on one wildcard subscription."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._cut = 0
        self._channels: dict[str, StreamChannel] = {}
        self._ids = itertools.count()
        self._direct: DirectDispatch | None = None
        self._sid: int | None = None

    @property
    def active(self) -> int:
        """Streams open right now."""
        return len(self._channels)

    async def start(self) -> None:
        """Subscribe the inbox wildcard."""
        self._prefix = self.nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._direct = DirectDispatch.of(self.nc)
        self._sid = await self._direct.subscribe(self._prefix + "*", self._on_frame)

    async def stop(self) -> None:
        """Unsubscribe; open streams stop receiving."""
        for channel in list(self._channels.values()):
            channel.close()
        sid, self._sid = self._sid, None
        if sid is not None and self._direct is not None and not self.nc.is_closed:
            try:
                await self._direct.unsubscribe(sid)
            except Exception:
                logger.debug("stream inbox unsubscribe failed", exc_info=True)

    def open(
        self,
        state: StreamState,
        *,
        peer: str | None,
        idle: float,
        first_headers: dict[str, str] | None = None,
        on_abort: Callable[[StreamError], None] | None = None,
    ) -> StreamChannel:
        """A new channel with an inbox of its own on this hub."""
        token = str(next(self._ids))
        channel = StreamChannel(
            self.nc,
            state,
            inbox=self._prefix + token,
            peer=peer,
            idle=idle,
            first_headers=first_headers,
            on_abort=on_abort,
            on_close=lambda _: self._channels.pop(token, None),
        )
        self._channels[token] = channel
        return channel

    def _on_frame(self, subject: bytes, reply: bytes, data: bytes, raw: bytes) -> None:
        # Straight from nats-py's parser (narun.transport.direct): no Msg, no task.
        channel = self._channels.get(subject[self._cut :].decode())
        if channel is None:
            return
        if channel.peer is not None:
            channel.feed_frame(data)
        else:
            channel.feed(DirectMsg(self.nc, subject.decode(), reply.decode(), data, raw))
