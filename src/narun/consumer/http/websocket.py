"""The consumer's side of WebSockets: an ASGI ``websocket`` scope served over a stream.

A gateway opens a WebSocket with a request on ``<service>.ws`` (docs/protocol.md,
*WebSockets*). :class:`WebSocketSessions` runs the app with a ``websocket`` scope for
each one: the app's ``websocket.accept`` becomes the stream's head (status 200 without FIN: the
upgrade; with the chosen subprotocol), a ``websocket.close`` before it a 403 head, a denial response
(``websocket.http.response.*``) a head with its status; after the accept, messages
travel both ways as records (:mod:`narun.protocol.wsmsg`) in the stream's body.

Nothing runs per socket but the app's own task: the channel's reads and writes happen in
the app's ``receive`` and ``send``. When the stream is lost (the gateway went away and
fell silent, a frame was lost) the app's next ``receive`` answers ``websocket.disconnect``
with code 1006, and ``send`` raises :class:`OSError`, as under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from nats.aio.msg import Msg

from narun._types import ASGIApp, Message, Scope
from narun.consumer.http.asgi import build_scope, parse_client
from narun.errors import BinaryHTTPError
from narun.protocol import wire
from narun.protocol.bhttp import Request, Response, decode_request, encode_response
from narun.protocol.stream import ABORT_INTERNAL, DEFAULT_IDLE_MS, StreamError, StreamState
from narun.protocol.wsmsg import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    MessageDecoder,
    Record,
    RecordType,
    encode_close,
    encode_message,
)
from narun.transport.stream import StreamChannel, StreamHub

__all__ = ["WebSocketSessions", "build_websocket_scope"]

logger = logging.getLogger(__name__)

_PLAIN = ((b"content-type", b"text/plain; charset=utf-8"),)


def build_websocket_scope(
    request: Request,
    *,
    client: tuple[str, int] | None = None,
    state: dict[str, Any] | None = None,
) -> Scope:
    """The ASGI ``websocket`` scope of a WebSocket opening ``request``."""
    scope = build_scope(request, client=client, state=state)
    scope["type"] = "websocket"
    del scope["method"]
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    protocols: list[str] = []
    for name, value in scope["headers"]:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scope["subprotocols"] = protocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


class _Closed(OSError):
    """``send`` on a WebSocket that is closed or lost (uvicorn raises an OSError too)."""


class _Session:
    """One WebSocket: the app's ``receive``/``send`` on a stream channel."""

    def __init__(self, channel: StreamChannel) -> None:
        self.channel = channel
        self.decoder = MessageDecoder()
        self.inbox: deque[Record] = deque()
        self.connected = False  # websocket.connect delivered
        self.accepted = False
        self.head_sent = False
        self.closed = False  # this side sent its close (or the stream is over)
        self.disconnected = False  # websocket.disconnect delivered
        self.denial: list[Message] = []

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.disconnected:
            return {"type": "websocket.disconnect", "code": CLOSE_ABNORMAL, "reason": ""}
        while not self.inbox:
            try:
                chunk = await self.channel.read() if self.accepted else None
            except StreamError:
                return self._disconnect(CLOSE_ABNORMAL, "")
            if chunk is None:
                return self._disconnect(CLOSE_NO_STATUS if self.accepted else CLOSE_ABNORMAL, "")
            try:
                self.inbox.extend(self.decoder.feed(chunk))
            except StreamError as exc:
                await self.channel.abort(exc.code, exc.reason)
                return self._disconnect(CLOSE_ABNORMAL, "")
        record = self.inbox.popleft()
        if record.type is RecordType.CLOSE:
            assert isinstance(record.data, str)
            if not self.closed:  # echo the close, as a WebSocket endpoint does
                self.closed = True
                await self._finish(record.code, "")
            return self._disconnect(record.code, record.data)
        if isinstance(record.data, str):
            return {"type": "websocket.receive", "text": record.data}
        return {"type": "websocket.receive", "bytes": record.data}

    def _disconnect(self, code: int, reason: str) -> Message:
        self.disconnected = True
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        channel = self.channel
        if self.closed or channel.state.abort_error is not None or channel.done:
            raise _Closed(f"{kind} on a closed WebSocket")
        if kind == "websocket.send" and self.accepted:
            text = message.get("text")
            data = text if text is not None else message.get("bytes")
            if data is None:
                raise TypeError("websocket.send without text or bytes")
            await self._write(encode_message(data))
        elif kind == "websocket.accept" and not self.head_sent:
            headers = [(k.lower(), v) for k, v in message.get("headers") or ()]
            subprotocol = message.get("subprotocol")
            if subprotocol is not None:
                headers.append((b"sec-websocket-protocol", subprotocol.encode()))
            self.accepted = self.head_sent = True
            channel.start()  # heartbeats and the idle timeout, from the accept on
            await channel.send_head(encode_response(Response(200, tuple(headers))), fin=False)
        elif kind == "websocket.close":
            self.closed = True
            if not self.head_sent:
                await self.refuse(403, b"Forbidden")
            else:
                await self._finish(message.get("code") or CLOSE_NORMAL, message.get("reason") or "")
        elif kind == "websocket.http.response.start" and not self.head_sent:
            self.denial = [message]
        elif kind == "websocket.http.response.body" and self.denial and not self.head_sent:
            self.denial.append(message)
            if not message.get("more_body", False):
                start = self.denial[0]
                body = b"".join(m.get("body", b"") for m in self.denial[1:])
                self.closed = True
                await self.refuse(start["status"], body, tuple(start.get("headers") or ()))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")

    async def _write(self, record: bytes) -> None:
        try:
            await self.channel.write(record)
        except StreamError as exc:
            raise _Closed(f"WebSocket lost: {exc.reason}") from None

    async def _finish(self, code: int, reason: str) -> None:
        """Send our CLOSE record and end our body."""
        try:
            await self.channel.write(encode_close(code, reason))
            await self.channel.end()
        except StreamError as exc:
            raise _Closed(f"WebSocket lost: {exc.reason}") from None

    async def refuse(
        self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = _PLAIN
    ) -> None:
        """Answer the opening with an HTTP response instead of the upgrade."""
        self.head_sent = True
        head = encode_response(Response(status, headers, body))
        try:
            await self.channel.send_head(head, fin=True)
        finally:
            self.channel.close()


class WebSocketSessions:
    """Serves the WebSocket openings that arrive on ``<service>.ws`` with ``app``.

    Sockets are long-lived and mostly idle, so they do not count against the service's
    request concurrency; :meth:`stop` closes those still open with 1001 (going away).
    """

    def __init__(
        self, app: ASGIApp, hub: StreamHub, *, state: dict[str, Any] | None = None
    ) -> None:
        self.app = app
        self.hub = hub
        self.state = state
        self._tasks: dict[asyncio.Task[None], _Session | None] = {}

    @property
    def active(self) -> int:
        """WebSockets open (or opening) right now."""
        return len(self._tasks)

    async def on_msg(self, msg: Msg) -> None:
        """Subscription callback: start serving one opening (never blocks)."""
        task = asyncio.get_running_loop().create_task(self._serve(msg))
        self._tasks[task] = None
        task.add_done_callback(self._tasks.pop)

    async def _serve(self, msg: Msg) -> None:
        headers = msg.headers or {}
        credit = wire.parse_window(headers.get(wire.STREAM))
        if credit is None or not msg.reply:
            logger.warning("WebSocket opening on %s without Narun-Stream", msg.subject)
            return
        idle = wire.parse_timeout(headers.get(wire.STREAM_IDLE_MS))
        idle = DEFAULT_IDLE_MS / 1000 if idle is None else max(idle, 0.05)
        state = StreamState(is_gateway=False, body_streamed=True, peer_credit=credit)
        channel = self.hub.open(
            state,
            peer=msg.reply,
            idle=idle,
            first_headers={wire.STREAM_CREDIT: str(state.granted)},
        )
        session = _Session(channel)
        task = asyncio.current_task()
        if task is not None:
            self._tasks[task] = session
        try:
            try:
                request = decode_request(msg.data)
            except BinaryHTTPError as exc:
                logger.warning("undecodable WebSocket opening on %s: %s", msg.subject, exc)
                await session.refuse(400, b"Bad Request")
                return
            scope = build_websocket_scope(
                request, client=parse_client(headers.get(wire.CLIENT_ADDR)), state=self.state
            )
            await self._run(session, scope)
        finally:
            channel.close()

    async def _run(self, session: _Session, scope: Scope) -> None:
        path = scope["path"]
        try:
            await self.app(scope, session.receive, session.send)
        except _Closed as exc:
            logger.info("WebSocket %s: %s", path, exc)
            return
        except asyncio.CancelledError:
            await session.channel.abort(ABORT_INTERNAL, "consumer stopped")
            raise
        except Exception:
            logger.exception("ASGI app raised on WebSocket %s", path)
            if not session.head_sent:
                await session.refuse(500, b"Internal Server Error")
            else:
                await session.channel.abort(ABORT_INTERNAL, "application failed")
            return
        if not session.head_sent:
            logger.warning("WebSocket %s: the app returned without accepting", path)
            await session.refuse(403, b"Forbidden")
        elif not session.closed and not session.channel.done:
            session.closed = True
            with contextlib.suppress(_Closed):
                await session._finish(CLOSE_NORMAL, "")
        logger.info("WebSocket %s closed", path)

    async def stop(self) -> None:
        """Close every open WebSocket (1001) and wait a moment for the apps to end."""
        for task, session in list(self._tasks.items()):
            if session is not None and session.accepted and not session.closed:
                session.closed = True
                with contextlib.suppress(OSError, StreamError):
                    await session._finish(1001, "service stopping")
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
