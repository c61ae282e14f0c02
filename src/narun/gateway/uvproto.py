"""uvicorn's httptools protocol, sending each response with one system call.

uvicorn writes the status line and headers of a response as soon as the app sends
``http.response.start``, and the body on ``http.response.body``: two ``send()`` calls,
and two wake-ups of the client, for every small response. The gateway always sends the
two messages back to back, so :class:`HTTPToolsProtocol` gives uvicorn a transport that
gathers the writes made during one step of the event loop and hands them to the real
transport together, right after that step. Nothing else changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol

__all__ = ["CoalescingTransport", "HTTPToolsProtocol"]


class CoalescingTransport:
    """A transport proxy whose writes reach ``transport`` once per loop step, joined."""

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; it is written right after the current loop step."""
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(bytes(data))

    def write_whole(self, data: bytes) -> None:
        """Write ``data``, a whole response, at once (after what is queued, if anything)."""
        if self._buffer:
            self._buffer.append(data)
        elif not self._transport.is_closing():
            self._transport.write(data)

    def flush(self) -> None:
        """Write what is queued now (dropped if the connection is already closing)."""
        buffer = self._buffer
        if not buffer:
            return
        self._buffer = []
        if self._transport.is_closing():
            return
        self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def close(self) -> None:
        """Write what is queued, then close (the transport still flushes its own buffer)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is queued and close at once."""
        self._buffer = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, pause_reading, resume_reading, set_protocol, ...
        return getattr(self._transport, name)


HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's whole header section (slowloris bound)."""


class HTTPToolsProtocol(_UvicornProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`.

    Pass it as ``uvicorn.Config(http=HTTPToolsProtocol)``. It also bounds the time a
    client may take to send a request's headers (:data:`HEADER_TIMEOUT`, counted from
    the connection or from the request's first byte): uvicorn's keep-alive timer is
    reset by every byte received, so a client trickling header bytes, or one that
    connects and sends nothing, would otherwise hold the connection forever.
    """

    header_timeout = HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        proxy = CoalescingTransport(transport, self.loop)
        super().connection_made(proxy)  # type: ignore[arg-type]
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its own timeout applies
        if not self.transport.is_closing():
            self.transport.close()
