"""uvicorn's httptools protocol, sending each response with one system call.

uvicorn writes the status line and headers of a response as soon as the app sends
``http.response.start``, and the body on ``http.response.body``: two ``send()`` calls,
and two wake-ups of the client, for every small response. The gateway always sends the
two messages back to back, so :class:`HttpToolsProtocol` gives uvicorn a transport that
gathers the writes made during one step of the event loop and hands them to the real
transport together, right after that step. Nothing else changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol

__all__ = ["CoalescingTransport", "HttpToolsProtocol"]


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


class HttpToolsProtocol(_UvicornProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`.

    Pass it as ``uvicorn.Config(http=HttpToolsProtocol)``.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        proxy = CoalescingTransport(transport, self.loop)
        super().connection_made(proxy)  # type: ignore[arg-type]
