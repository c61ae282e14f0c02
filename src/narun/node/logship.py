"""An instance's output as lines: bounded length, never a dropped stream.

:class:`LineSplitter` is the pure part (bytes in, lines out); :func:`pump` reads a pipe to
its end and hands every line to a callback. A line longer than ``max_bytes`` is cut into
pieces of at most ``max_bytes`` (Go narun stops forwarding a stream at its first line over
64 KiB; here the rest of the output keeps flowing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DEFAULT_MAX_LINE", "LineSplitter", "pump"]

DEFAULT_MAX_LINE = 16 * 1024
"""Longest log message in bytes; longer lines are split."""


class LineSplitter:
    """Feed bytes, get complete lines (without their newline), each at most ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_LINE) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Lines completed by ``data`` (and pieces of over-long lines)."""
        self._buf += data
        out: list[bytes] = []
        while True:
            nl = self._buf.find(b"\n", 0, self.max_bytes + 1)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                out.append(line.removesuffix(b"\r"))
            elif len(self._buf) > self.max_bytes:
                out.append(bytes(self._buf[: self.max_bytes]))
                del self._buf[: self.max_bytes]
            else:
                return out

    def flush(self) -> list[bytes]:
        """The unfinished last line, if any (at the end of the stream)."""
        rest, self._buf = bytes(self._buf), bytearray()
        return [rest] if rest else []


async def pump(
    reader: asyncio.StreamReader, on_line: Callable[[str], None], *, max_bytes: int
) -> None:
    """Read ``reader`` to its end, calling ``on_line`` with every decoded line."""
    splitter = LineSplitter(max_bytes)
    while chunk := await reader.read(65536):
        for line in splitter.feed(chunk):
            on_line(line.decode("utf-8", "replace"))
    for line in splitter.flush():
        on_line(line.decode("utf-8", "replace"))
