"""The gateway's side of streams: request bodies sent as they arrive, replies relayed.

:func:`relay_reply` writes a streamed reply to the HTTP client as its frames come
(``Transfer-Encoding: chunked`` when the app gave no ``Content-Length``), and
:class:`BodyPump` sends a request body to the consumer as the client sends it, then
watches for the client going away. Memory stays bounded on both paths: the client's
socket is read only as fast as the consumer grants credit, and the consumer's frames are
taken only as fast as the client's socket drains (uvicorn's ``send`` waits while the
transport is paused).

Errors before the head are raised as :class:`narun.errors.NarunError` for
:mod:`narun.gateway.http` to answer; after the head the response can only be cut short,
which the client sees as an incomplete chunked body.
"""

from __future__ import annotations

import asyncio
import logging

from narun._types import Message, Receive, Send
from narun.errors import (
    BadBackendReply,
    BinaryHTTPError,
    NarunError,
    PayloadTooLarge,
    RequestTimeout,
)
from narun.observe.record import Record
from narun.protocol.bhttp import decode_response
from narun.protocol.fields import end_to_end
from narun.protocol.stream import (
    ABORT_CLIENT_GONE,
    ABORT_IDLE,
    ABORT_TOO_LARGE,
    FIN,
    Frame,
    StreamError,
)
from narun.transport.stream import StreamChannel

__all__ = ["BodyPump", "ClientGone", "DisconnectWatch", "relay_reply", "stream_error"]

logger = logging.getLogger(__name__)


class ClientGone(NarunError):
    """The HTTP client went away before its answer was complete (logged as 499)."""

    http_status = 499
    public_message = "Client closed the request"


def stream_error(exc: StreamError) -> NarunError:
    """The error to answer with for a stream that failed before its head was sent."""
    if exc.code == ABORT_TOO_LARGE:
        return PayloadTooLarge(str(exc))
    if exc.code == ABORT_IDLE:
        return RequestTimeout(str(exc))
    if exc.code == ABORT_CLIENT_GONE:
        return ClientGone(str(exc))
    return exc


class DisconnectWatch:
    """Cancels the requests whose HTTP client went away while they wait for a reply.

    Quick requests cost two dict operations and no task: a single timer ticks every
    ``delay`` seconds while requests wait, and starts watching (``receive()``, which
    answers ``http.disconnect`` when the client goes) only the requests that were already
    waiting at the previous tick. A request is therefore watched from between ``delay``
    and twice ``delay`` after it was sent.
    """

    def __init__(self, delay: float = 0.25) -> None:
        self.delay = delay
        self._new: dict[asyncio.Task[object], Receive] = {}
        self._old: dict[asyncio.Task[object], Receive] = {}
        self._watchers: dict[asyncio.Task[object], asyncio.Task[None]] = {}
        self._fired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[object], receive: Receive) -> None:
        """Watch ``task``'s client from now until :meth:`remove`."""
        self._new[task] = receive
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._tick)

    def remove(self, task: asyncio.Task[object]) -> bool:
        """Stop watching ``task``; True if it was cancelled because its client left."""
        if self._new.pop(task, None) is None:
            self._old.pop(task, None)
        watcher = self._watchers.pop(task, None)
        if watcher is not None:
            watcher.cancel()
        if self._fired and task in self._fired:
            self._fired.discard(task)
            return True
        return False

    def _tick(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        for task, receive in self._old.items():
            self._watchers[task] = loop.create_task(self._watch(task, receive))
        self._old, self._new = self._new, {}
        if self._old:
            self._timer = loop.call_later(self.delay, self._tick)

    async def _watch(self, task: asyncio.Task[object], receive: Receive) -> None:
        message = await receive()
        if message["type"] == "http.disconnect" and self._watchers.pop(task, None) is not None:
            self._fired.add(task)
            task.cancel()


class BodyPump:
    """Sends the rest of a request body into a stream, then watches for a disconnect.

    ``first`` is what of the body's first piece did not fit in the request itself;
    ``seen`` the body bytes received so far, ``limit`` the route's maximum (None: none),
    ``idle`` the most seconds to wait for the client's next piece.
    """

    def __init__(
        self,
        channel: StreamChannel,
        receive: Receive,
        *,
        first: bytes,
        seen: int,
        limit: int | None,
        idle: float,
    ) -> None:
        self.channel = channel
        self.receive = receive
        self.first = first
        self.seen = seen
        self.limit = limit
        self.idle = idle
        self.client_gone = False
        self.client_idle = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        channel = self.channel
        try:
            if not await channel.ready():
                return  # a single-message reply came instead: nothing to send
            await channel.write(self.first)
            self.first = b""
            while True:
                try:
                    async with asyncio.timeout(self.idle):
                        message: Message = await self.receive()
                except TimeoutError:
                    self.client_idle = True
                    await channel.abort(ABORT_IDLE, "client sent no body for the idle timeout")
                    return
                if message["type"] == "http.disconnect":
                    self.client_gone = True
                    await channel.abort(ABORT_CLIENT_GONE, "client went away")
                    return
                body = message.get("body", b"")
                self.seen += len(body)
                if self.limit is not None and self.seen > self.limit:
                    await channel.abort(ABORT_TOO_LARGE, "request body over the route's limit")
                    return
                if body:
                    await channel.write(body)
                if not message.get("more_body", False):
                    break
            await channel.end()
            await self._watch()
        except PayloadTooLarge:
            await channel.abort(ABORT_TOO_LARGE, "request body over max_body_bytes")
        except StreamError:
            pass  # the stream ended under us; the reader reports it

    async def _watch(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect" and not self.channel.done:
            self.client_gone = True
            await self.channel.abort(ABORT_CLIENT_GONE, "client went away")

    def stop(self) -> None:
        """Stop pumping and watching."""
        self.task.cancel()


async def relay_reply(
    channel: StreamChannel,
    head: Frame,
    send: Send,
    *,
    method: str,
    idle: float,
    extra: list[tuple[bytes, bytes]],
    drop: frozenset[bytes],
    receive: Receive | None = None,
    record: Record | None = None,
) -> int:
    """Answer the HTTP client with the streamed reply whose HEAD is ``head``.

    ``receive``, when given (the request body has been read), is watched for the client
    going away, which aborts the stream. Returns the status sent. Raises
    :class:`BadBackendReply` for an undecodable head (nothing sent yet).
    """
    try:
        response = decode_response(head.data)
    except BinaryHTTPError as exc:
        await channel.abort(502, "undecodable head")
        raise BadBackendReply(str(exc)) from None
    fin = bool(head.value & FIN)
    bodyless = method == "HEAD" or response.status in (204, 304)
    headers = [(k, v) for k, v in end_to_end(response.headers) if k.lower() not in drop]
    if fin:
        if not bodyless:
            headers.append((b"content-length", str(len(response.content)).encode()))
    else:
        # The app's own length, if it gave one; else the client gets a chunked body.
        headers += [(k, v) for k, v in response.headers if k.lower() == b"content-length"]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if record is None:
        record = Record.__new__(Record)  # a scratch tally: nobody reads it
    if fin or bodyless:
        content = b"" if bodyless else response.content
        await send({"type": "http.response.body", "body": content})
        record.bytes_out += len(content)
        if not fin:
            await channel.abort(ABORT_CLIENT_GONE, "no body for this answer")
        return response.status
    channel.start(idle)
    watch = None
    if receive is not None:
        watch = asyncio.get_running_loop().create_task(_watch_client(receive, channel))
    try:
        if response.content:
            await send({"type": "http.response.body", "body": response.content, "more_body": True})
            record.bytes_out += len(response.content)
        while True:
            chunk = await channel.read()
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            record.bytes_out += len(chunk)
        await send({"type": "http.response.body", "body": b""})
    except StreamError as exc:
        # Too late for a status: the client's body is cut short (no final chunk).
        if exc.code == ABORT_CLIENT_GONE:
            logger.info("client went away during a streamed reply")
            return 499
        logger.warning("streamed reply ended early: %s", exc)
    finally:
        if watch is not None:
            watch.cancel()
        channel.close()
    return response.status


async def _watch_client(receive: Receive, channel: StreamChannel) -> None:
    message = await receive()
    if message["type"] == "http.disconnect" and not channel.done:
        await channel.abort(ABORT_CLIENT_GONE, "client went away")
