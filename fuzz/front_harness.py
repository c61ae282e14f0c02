"""The gateway's HTTP front on a fake connection, for the fuzz target and its unit tests.

:func:`check` feeds bytes into a :class:`narun.gateway.front.FrontProtocol` (the real
one: uvicorn's httptools protocol with the gateway's fast path, over the real edge and
:class:`narun.gateway.http.HTTPGateway`) whose transport records what is written and
whose requester answers every request at once without NATS. It asserts that:

- nothing raises out of the protocol, and no request task fails;
- the connection is answered or closed whenever llhttp parsed a request or refused
  the bytes;
- no request is forwarded that llhttp refused: at most as many requests reach the
  requester as llhttp, parsing the same bytes on its own, completed before any error.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import httptools
import uvicorn
from nats.aio.msg import Msg
from uvicorn.server import ServerState

from narun.config.gateway import GatewayConfig
from narun.gateway.edge import Edge
from narun.gateway.front import Front, FrontProtocol, protocol_for
from narun.gateway.http import HTTPGateway
from narun.protocol import bhttp
from narun.protocol.forwarded import TrustedProxies
from narun.transport.requester import OnReply, Requester

__all__ = ["Harness", "check"]

_REPLY = bhttp.encode_response(
    bhttp.Response(status=200, headers=((b"content-type", b"text/plain"),), content=b"ok")
)


class _Conn:
    max_payload = 1024 * 1024
    is_connected = True


class StubRequester:
    """Answers every request with a 200 Binary HTTP reply, from the next loop step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.nc = _Conn()
        self.sent = 0
        """Requests forwarded, by either path."""

    def _reply(self) -> Msg:
        return Msg(cast(Any, None), subject="_INBOX.x.1", data=_REPLY, headers={})

    def send(self, subject: str, block: bytes, payload: bytes, timeout: float, cb: OnReply) -> str:
        bhttp.decode_request(payload)  # what the fast path sends is well formed
        self.sent += 1
        self.loop.call_soon(cb, self._reply())
        return str(self.sent)

    async def call(self, subject: str, payload: bytes, *args: Any, **kwargs: Any) -> Msg:
        bhttp.decode_request(payload)
        self.sent += 1
        return self._reply()

    def stream_of(self, reply: Msg) -> None:
        return None

    def forget(self, token: str, service: str) -> None:
        pass


class Transport(asyncio.Transport):
    """Records writes and closing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return ("127.0.0.1", 8080)
        if name == "peername":
            return ("127.0.0.1", 50000)
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass


class Harness:
    """One gateway front (config, gateway, edge, protocol class) on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.requester = StubRequester(self.loop)
        config = GatewayConfig.model_validate(
            {
                "nats_url": "nats://127.0.0.1:1",
                "retry_seconds": 0,
                "wake_timeout_seconds": 0,
                "routes": [
                    {"path": "/a/", "methods": ["GET", "POST", "HEAD"], "service": "svc"},
                    {"path": "/b", "methods": ["PUT"], "service": "svc", "max_body_bytes": 64},
                ],
            }
        )
        requester = cast(Requester, self.requester)
        self.http = HTTPGateway(config, requester=lambda: requester)
        self.edge = Edge(self.http, trusted_proxies=TrustedProxies(()), max_header_bytes=4096)
        self.front = Front(self.http, self.edge)
        self.uvicorn = uvicorn.Config(
            self.edge,
            http=protocol_for(self.front, 10.0),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
        )
        self.uvicorn.load()
        self.state = ServerState()
        self.failures: list[object] = []
        self.loop.set_exception_handler(lambda _, ctx: self.failures.append(ctx))

    async def _settle(self, proto: FrontProtocol) -> None:
        # Until no request is being served (a task, a fast request, the pipeline).
        for _ in range(500):
            await asyncio.sleep(0)
            if not self.state.tasks and proto._serving is None and not proto.pipeline:
                return

    def run(self, chunks: list[bytes]) -> tuple[FrontProtocol, Transport]:
        """Feed ``chunks`` to a new connection (one read each) and let it settle."""
        return self.loop.run_until_complete(self._run(chunks))

    async def _run(self, chunks: list[bytes]) -> tuple[FrontProtocol, Transport]:
        protocol_class = cast(type[FrontProtocol], self.uvicorn.http_protocol_class)
        proto = protocol_class(self.uvicorn, self.state, {}, _loop=self.loop)
        transport = Transport()
        proto.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            proto.data_received(chunk)
            await self._settle(proto)
        proto.connection_lost(None)
        for task in list(self.state.tasks):
            task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        return proto, transport


def llhttp_view(data: bytes) -> tuple[int, bool]:
    """Requests llhttp completes in ``data`` before any error, and whether it refused."""

    class Count:
        done = 0

        def on_message_complete(self) -> None:
            self.done += 1

    count = Count()
    parser = httptools.HttpRequestParser(count)
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return count.done, False
    except httptools.HttpParserError:
        return count.done, True
    return count.done, False


_harness: Harness | None = None


def check(data: bytes, split: int = 0) -> None:
    """One input: ``data`` in one read, or in two at ``split`` (0: one read)."""
    global _harness
    if _harness is None:
        _harness = Harness()
    harness = _harness
    before = harness.requester.sent
    chunks = [data[:split], data[split:]] if 0 < split < len(data) else [data]
    _, transport = harness.run(chunks)
    forwarded = harness.requester.sent - before
    complete, refused = llhttp_view(data)
    assert not harness.failures, harness.failures
    assert forwarded <= complete, (forwarded, complete, data)
    if complete or refused:
        assert transport.written or transport.closed, data
    if forwarded:
        assert transport.written, data
