"""The gateway's side of WebSockets: the client's socket carried over a stream.

A WebSocket opening on a route with ``websocket: true`` becomes a request on
``<service>.ws`` (docs/protocol.md, *WebSockets*) whose reply is the head of a stream.
A head with status 200 and without FIN accepts the socket (with the app's subprotocol);
a head with FIN is answered to the client as an HTTP response instead of the upgrade (uvicorn's
WebSocket denial response). Then messages travel both ways as records
(:mod:`narun.protocol.wsmsg`) in the stream's body, and close codes and reasons with
them. Pings are answered by uvicorn here, never sent on.

Per socket this costs the ASGI task (client to service) and one task relaying the
service's records to the client; heartbeats and the idle timeout are the stream
channel's timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from narun._types import Message, Receive, Scope, Send
from narun.errors import BinaryHTTPError
from narun.protocol import wire
from narun.protocol.bhttp import Request, decode_response, encode_request
from narun.protocol.stream import ABORT_CLIENT_GONE, ABORT_IDLE, FIN, Frame, StreamError
from narun.protocol.wsmsg import (
    CLOSE_INTERNAL,
    CLOSE_NO_STATUS,
    MessageDecoder,
    RecordType,
    encode_close,
    encode_message,
)
from narun.transport.requester import Requester
from narun.transport.stream import StreamChannel

__all__ = ["deny", "relay_websocket"]

logger = logging.getLogger(__name__)

# Connection-level fields of the handshake: the gateway's own business with the client.
_HANDSHAKE_DROP = frozenset(
    {
        b"connection",
        b"upgrade",
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"keep-alive",
        b"te",
    }
)
_REPLY_DROP = frozenset(
    {
        b"connection",
        b"upgrade",
        b"content-length",
        b"transfer-encoding",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)
# How long the gateway waits for the service's close after the client's.
_CLOSE_WAIT = 5.0


async def deny(
    scope: Scope, send: Send, status: int, text: str, fields: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Refuse a WebSocket opening with an HTTP ``status`` (403 without the denial extension)."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *fields,
    ]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def opening_request(scope: Scope, request_id: tuple[bytes, bytes]) -> Request:
    """The Binary HTTP GET that opens the WebSocket of ``scope`` at the service."""
    authority = ""
    headers: list[tuple[bytes, bytes]] = []
    for name, value in scope["headers"]:
        if name in _HANDSHAKE_DROP or name == request_id[0]:
            if name == b"host":
                authority = value.decode("latin-1")
            continue
        headers.append((name, value))
    headers.append(request_id)
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    return Request(
        method="GET",
        scheme="https" if scope.get("scheme") == "wss" else "http",
        authority=authority,
        path=target.decode("latin-1"),
        headers=tuple(headers),
    )


async def relay_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    requester: Requester,
    service: str,
    headers: dict[str, str],
    request_id: tuple[bytes, bytes],
    timeout: float,
    idle: float,
) -> tuple[int, int, int]:
    """Carry one WebSocket to ``service``; returns (status, bytes in, bytes out)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return 499, 0, 0
    payload = encode_request(opening_request(scope, request_id))
    try:
        channel = await requester.open_stream(wire.websocket_subject(service), payload, headers)
    except Exception as exc:
        logger.warning("WebSocket %s -> %s: %s", scope["path"], service, exc)
        await deny(scope, send, 503, "Service unavailable", (request_id,))
        return 503, 0, 0
    try:
        try:
            async with asyncio.timeout(timeout):
                head = await channel.wait_head()
        except TimeoutError:
            await channel.abort(ABORT_IDLE, "no WebSocket answer within the route's timeout")
            await deny(scope, send, 504, "Gateway timeout", (request_id,))
            return 504, 0, 0
        except StreamError as exc:
            logger.warning("WebSocket %s -> %s: %s", scope["path"], service, exc)
            await deny(scope, send, 502, "Bad gateway", (request_id,))
            return 502, 0, 0
        if not isinstance(head, Frame):
            hdrs = head.headers
            if hdrs is not None and not head.data and hdrs.get("Status") == "503":
                # No-responders: no instance serves WebSockets (none running, or
                # consumers without WebSockets such as Go narun's or WSGI apps).
                logger.warning(
                    "WebSocket %s -> %s: no instance serves WebSockets", scope["path"], service
                )
                text = "Service does not accept WebSocket connections"
                await deny(scope, send, 501, text, (request_id,))
                return 501, 0, 0
            logger.warning("WebSocket %s -> %s: a single-message reply", scope["path"], service)
            await deny(scope, send, 502, "Bad gateway", (request_id,))
            return 502, 0, 0
        try:
            response = decode_response(head.data)
        except BinaryHTTPError as exc:
            logger.warning("WebSocket %s -> %s: bad head: %s", scope["path"], service, exc)
            await channel.abort(502, "undecodable head")
            await deny(scope, send, 502, "Bad gateway", (request_id,))
            return 502, 0, 0
        fields = [(k.lower(), v) for k, v in response.headers]
        if head.value & FIN or response.status != 200:
            await _denial(scope, send, response.status, fields, response.content, request_id)
            return response.status, 0, len(response.content)
        subprotocol = next((v.decode() for k, v in fields if k == b"sec-websocket-protocol"), None)
        extra = [(k, v) for k, v in fields if k not in _REPLY_DROP]
        extra.append(request_id)
        await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": extra})
        channel.start(idle)
        return await _Pipe(channel, receive, send).run()
    finally:
        channel.close()


async def _denial(
    scope: Scope,
    send: Send,
    status: int,
    fields: list[tuple[bytes, bytes]],
    body: bytes,
    request_id: tuple[bytes, bytes],
) -> None:
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(k, v) for k, v in fields if k not in _REPLY_DROP and k != request_id[0]]
    headers += [(b"content-length", str(len(body)).encode()), request_id]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class _Pipe:
    """Both directions of one accepted WebSocket."""

    def __init__(self, channel: StreamChannel, receive: Receive, send: Send) -> None:
        self.channel = channel
        self.receive = receive
        self.send = send
        self.bytes_in = 0
        self.bytes_out = 0
        self.client_closed = False

    async def run(self) -> tuple[int, int, int]:
        back = asyncio.get_running_loop().create_task(self._to_client())
        try:
            await self._to_service()
            if not back.done():
                # The client closed: give the service a moment to answer its close.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CLOSE_WAIT):
                        await asyncio.shield(back)
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await back
        return 101, self.bytes_in, self.bytes_out

    async def _to_service(self) -> None:
        channel = self.channel
        while True:
            message: Message = await self.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.client_closed = True
                # The client's close, or its answer to the service's: either way the
                # service gets a CLOSE and END (writing fails once the stream is lost).
                code = message.get("code") or CLOSE_NO_STATUS
                try:
                    await channel.write(encode_close(code, message.get("reason") or ""))
                    await channel.end()
                except StreamError:
                    pass
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            data = text if text is not None else message.get("bytes") or b""
            self.bytes_in += len(data)
            try:
                await channel.write(encode_message(data))
            except StreamError:
                return  # the service side is gone: _to_client closes the client

    async def _to_client(self) -> None:
        channel = self.channel
        decoder = MessageDecoder()
        send = self.send
        try:
            while True:
                chunk = await channel.read()
                if chunk is None:
                    if not self.client_closed:
                        await send({"type": "websocket.close", "code": 1000})
                    return
                for record in decoder.feed(chunk):
                    if record.type is RecordType.CLOSE:
                        if not self.client_closed:
                            assert isinstance(record.data, str)
                            await send(
                                {
                                    "type": "websocket.close",
                                    "code": record.code,
                                    "reason": record.data,
                                }
                            )
                        return
                    self.bytes_out += len(record.data)
                    if isinstance(record.data, str):
                        await send({"type": "websocket.send", "text": record.data})
                    else:
                        await send({"type": "websocket.send", "bytes": record.data})
        except StreamError as exc:
            if exc.code != ABORT_CLIENT_GONE:
                logger.warning("WebSocket stream lost: %s", exc)
            if not channel.done:
                await channel.abort(exc.code, exc.reason)
            if not self.client_closed:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": CLOSE_INTERNAL})
        except OSError:
            # The client is gone under us.
            if not channel.done:
                await channel.abort(ABORT_CLIENT_GONE, "client went away")
