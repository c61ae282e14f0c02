"""Streaming gRPC methods on the consumer (docs/protocol.md, *gRPC streams*).

A call to a client-, server- or bidirectional-streaming method from a gateway that reads
streams (``Narun-Stream``) runs over a stream of :mod:`narun.transport.stream`: the
request carries the first request message, further ones arrive as records
(:mod:`narun.protocol.grpcstream`) in DATA frames, and the servicer's messages go back
the same way, after a HEAD with its initial metadata and before a trailer record with
the status. The consumer grants credit at once (its first message), so the gateway can
send request messages and abort the call from the start.

Flow control is the stream's: a servicer's ``yield`` (or ``context.write``) waits while
the gateway has not granted credit, and request messages are taken from the stream only
as the servicer reads them. ``async def`` servicers run on the event loop; plain ones on
the thread pool, where each message they read or write is one hop to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any

import grpc

from narun.consumer.grpc.context import AsyncContext, CallContext, SyncContext
from narun.protocol import grpcstream, wire
from narun.protocol.grpcstream import RecordReader
from narun.protocol.grpcwire import GRPCRequest, GRPCStatus, GRPCWireError, StatusCode
from narun.protocol.stream import ABORT_BAD_PEER, ABORT_INTERNAL, StreamError, StreamState
from narun.transport.stream import StreamChannel, StreamHub

__all__ = ["GRPCStream", "StreamContext", "SyncStreamContext", "behavior", "open_channel", "serve"]

logger = logging.getLogger(__name__)

_Handler = Any  # grpc.RpcMethodHandler
_ONE_MESSAGE = "exactly one request message is required by this method"


class GRPCStream:
    """One streamed call: reads request messages, writes response messages and the status."""

    def __init__(
        self,
        channel: StreamChannel,
        first: bytes | None,
        deserializer: Callable[[bytes], Any] | None,
        serializer: Callable[[Any], bytes] | None,
    ) -> None:
        self.channel = channel
        self._first = first
        self._deserialize = deserializer
        self._serialize = serializer
        self._reader = RecordReader()
        self._ready: list[bytes] = []
        self._ended = False
        self.head_sent = False
        self._finishing = False
        self.context: CallContext | None = None
        self.messages_in = 0
        self.messages_out = 0

    # -- request messages -----------------------------------------------------------

    async def read(self) -> Any:
        """The next request message (deserialized), or ``grpc.aio.EOF`` at the end."""
        data = await self._next()
        if data is None:
            return grpc.aio.EOF  # type: ignore[attr-defined]
        self.messages_in += 1
        return data if self._deserialize is None else self._deserialize(data)

    async def _next(self) -> bytes | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        while not self._ready:
            if self._ended:
                return None
            chunk = await self.channel.read()
            if chunk is None:
                self._ended = True
                if self._reader.pending:
                    raise StreamError(ABORT_BAD_PEER, "request stream ends inside a message")
                continue
            try:
                records = self._reader.feed(chunk)
            except GRPCWireError as exc:
                raise StreamError(ABORT_BAD_PEER, str(exc)) from None
            for flags, data in records:
                if flags != grpcstream.MESSAGE:
                    raise StreamError(ABORT_BAD_PEER, "trailer record from the gateway")
                self._ready.append(data)
        return self._ready.pop(0)

    async def messages(self) -> AsyncIterator[Any]:
        """The request messages, as the servicer's ``request_iterator``."""
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                return
            yield message

    # -- response messages ----------------------------------------------------------

    async def send_head(self) -> None:
        """Send the HEAD (initial metadata) unless it went already."""
        if not self.head_sent:
            self.head_sent = True
            initial = self.context.take_initial() if self.context is not None else ()
            await self.channel.send_head(grpcstream.encode_head(initial), fin=False)

    async def write(self, message: Any) -> None:
        """Send one response message (waits for the gateway's credit)."""
        if self._finishing:  # a thread servicer still writing after its deadline
            raise StreamError(ABORT_INTERNAL, "the call has ended")
        data = message if self._serialize is None else self._serialize(message)
        if not isinstance(data, bytes):
            raise TypeError(f"serialized response is {type(data).__name__}, not bytes")
        await self.send_head()
        self.messages_out += 1
        await self.channel.write(grpcstream.encode_record(data))

    async def finish(self, status: GRPCStatus) -> None:
        """Send the trailer and end the stream."""
        self._finishing = True
        await self.send_head()
        await self.channel.write(grpcstream.encode_trailer(status))
        await self.channel.end()
        self.channel.close()


class StreamContext(AsyncContext):
    """``grpc.aio.ServicerContext`` of a streamed call: ``read`` and ``write`` work."""

    stream: GRPCStream

    async def read(self) -> Any:
        """The next request message, or ``grpc.aio.EOF``."""
        return await self.stream.read()

    async def write(self, message: Any) -> None:
        """Send one response message."""
        await self.stream.write(message)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Metadata sent before the first response message; at most once."""
        self._send_initial(initial_metadata)
        await self.stream.send_head()


class SyncStreamContext(SyncContext):
    """``grpc.ServicerContext`` of a streamed call served on a thread."""

    stream: GRPCStream
    loop: asyncio.AbstractEventLoop

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Metadata sent before the first response message; at most once."""
        self._send_initial(initial_metadata)
        asyncio.run_coroutine_threadsafe(self.stream.send_head(), self.loop).result()


class _SyncRequests(Iterator[Any]):
    """The request messages for a servicer on a thread (each one fetched from the loop)."""

    def __init__(self, stream: GRPCStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop

    def __next__(self) -> Any:
        message = asyncio.run_coroutine_threadsafe(self._stream.read(), self._loop).result()
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise StopIteration
        return message


def open_channel(hub: StreamHub, reply: str, credit: int, idle: float) -> StreamChannel:
    """The consumer's end of a streamed call (its first frame grants credit)."""
    state = StreamState(is_gateway=False, body_streamed=True, peer_credit=credit)
    channel = hub.open(
        state,
        peer=reply,
        idle=idle,
        first_headers={wire.STREAM_CREDIT: str(state.granted)},
    )
    channel.start()
    return channel


async def serve(
    *,
    channel: StreamChannel,
    handler: _Handler,
    request: GRPCRequest,
    first: bytes | None,
    is_async: bool,
    executor: Executor,
    started: float,
) -> GRPCStatus:
    """Run one streamed call to its end; return its status (already sent, if it could be).

    Raises :class:`StreamError` when the stream broke (nothing more can be sent) and
    ``asyncio.CancelledError`` when the gateway aborted the call.
    """
    stream = GRPCStream(channel, first, handler.request_deserializer, handler.response_serializer)
    loop = asyncio.get_running_loop()
    await channel.send_credit()
    context: CallContext
    if is_async:
        context = StreamContext(request, started=started)
        context.stream = stream
    else:
        sync = SyncStreamContext(request, started=started)
        sync.stream, sync.loop = stream, loop
        context = sync
    stream.context = context
    current = asyncio.current_task()
    assert current is not None

    def aborted(_: StreamError) -> None:
        context._cancel()
        current.cancel()

    channel.on_abort = aborted
    timer = asyncio.timeout(context.time_remaining())
    try:
        try:
            async with timer:
                if is_async:
                    await _run_async(handler, stream, context)
                else:
                    await loop.run_in_executor(executor, _run_sync, handler, stream, context, loop)
            status = context.status()
        except StreamError:
            context._cancel()
            raise
        except asyncio.CancelledError:
            context._cancel()
            if not timer.expired():
                raise
            logger.info("%s: deadline exceeded", request.method)
            status = GRPCStatus(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        except Exception as exc:
            if context.aborted:
                status = context.status()
            elif context.code() not in (None, grpc.StatusCode.OK):
                logger.info("%s raised %s after setting a status", request.method, type(exc))
                status = context.status()
            else:
                logger.exception("%s: exception calling application", request.method)
                status = GRPCStatus(StatusCode.UNKNOWN, "Exception calling application")
        status = GRPCStatus(status.code, status.message, (), status.trailing_metadata)
        try:
            await stream.finish(status)
        except StreamError:
            raise
        except Exception:
            logger.exception("%s: could not send the status", request.method)
            await channel.abort(ABORT_INTERNAL, "status not sent")
        return status
    finally:
        context.finish()


async def _run_async(handler: _Handler, stream: GRPCStream, context: CallContext) -> None:
    argument: Any = (
        stream.messages() if handler.request_streaming else await _single(stream, context)
    )
    result = behavior(handler)(argument, context)
    if handler.response_streaming:
        if hasattr(result, "__aiter__"):
            async for message in result:
                await stream.write(message)
        elif result is not None:
            await result  # the servicer writes with context.write()
    else:
        await stream.write(await result)


async def _single(stream: GRPCStream, context: CallContext) -> Any:
    message = await stream.read()
    if message is grpc.aio.EOF:  # type: ignore[attr-defined]
        # As the gateway answered before streams: one request message is required.
        context._mark_abort(grpc.StatusCode.UNIMPLEMENTED, _ONE_MESSAGE, None)
        raise RuntimeError(_ONE_MESSAGE)
    return message


def _run_sync(
    handler: _Handler, stream: GRPCStream, context: CallContext, loop: asyncio.AbstractEventLoop
) -> None:
    def hop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    argument: Any = (
        _SyncRequests(stream, loop) if handler.request_streaming else hop(_single(stream, context))
    )
    result = behavior(handler)(argument, context)
    if handler.response_streaming:
        iterator = iter(result)
        try:
            for message in iterator:
                hop(stream.write(message))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
    else:
        hop(stream.write(result))


def behavior(handler: _Handler) -> Callable[[Any, Any], Any]:
    """The servicer function of a streaming method handler."""
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary  # type: ignore[no-any-return]
    return handler.unary_stream  # type: ignore[no-any-return]
