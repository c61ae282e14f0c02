"""An HTTP/1.x client over a bare socket, reading answers exactly as they come off the wire.

For tests of the gateway's HTTP front: requests are sent as given (any bytes, in one or
several pieces), and each answer is read strictly by its framing (Content-Length, chunked,
or up to the close), keeping the raw bytes, so that a test can state what it expects
byte for byte and whether the connection was closed.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

__all__ = ["Answer", "Conn"]


@dataclass
class Answer:
    """One HTTP response as read from the socket."""

    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    """Names lowercased, values as sent, in order."""
    body: bytes
    """The body with any chunked framing removed."""
    raw: bytes = field(repr=False)
    """Every byte of the response on the wire (head, framing, body)."""

    def header(self, name: str) -> str | None:
        """The value of the only (or last) field ``name``, or None."""
        found = [v for k, v in self.headers if k == name.encode()]
        return found[-1].decode("latin-1") if found else None


class Conn:
    """One TCP connection to ``127.0.0.1:port``. Use as a context manager."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float | None = None) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self._buffer += chunk
        return bool(chunk)

    def _take_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise EOFError(f"connection closed mid-line: {self._buffer!r}")
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise EOFError(f"connection closed {n - len(self._buffer)} bytes short")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_answer(self, *, head_only: bool = False, timeout: float = 10.0) -> Answer:
        """Read the next response; ``head_only`` for answers to HEAD (no body follows)."""
        self.sock.settimeout(timeout)
        consumed: list[bytes] = []
        status_line = self._take_line()
        consumed.append(status_line + b"\r\n")
        version, status, reason = [*status_line.split(b" ", 2), b""][:3]
        headers: list[tuple[bytes, bytes]] = []
        while line := self._take_line():
            consumed.append(line + b"\r\n")
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        consumed.append(b"\r\n")
        code = int(status)
        fields = dict(headers)
        body = b""
        if head_only or code in (204, 304) or 100 <= code < 200:
            pass
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            pieces = []
            while True:
                size_line = self._take_line()
                consumed.append(size_line + b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                data = self._take(size + 2)
                consumed.append(data)
                if data[-2:] != b"\r\n":
                    raise AssertionError(f"chunk not followed by CRLF: {data[-2:]!r}")
                if size == 0:
                    break
                pieces.append(data[:-2])
            body = b"".join(pieces)
        elif b"content-length" in fields:
            body = self._take(int(fields[b"content-length"]))
            consumed.append(body)
        else:  # up to the close
            while self._fill():
                pass
            body, self._buffer = self._buffer, b""
            consumed.append(body)
        return Answer(code, reason, version, headers, body, b"".join(consumed))

    def is_closed(self, within: float = 5.0) -> bool:
        """Whether the peer closes the connection within ``within`` s, sending nothing more.

        Raises if bytes arrive instead (nothing was expected).
        """
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            if self._buffer:
                raise AssertionError(f"unexpected bytes: {self._buffer[:200]!r}")
            try:
                if not self._fill(left):
                    return True
            except TimeoutError:
                return False
        return False

    def nothing_within(self, seconds: float) -> bool:
        """True if no byte arrives and the connection stays open for ``seconds``."""
        try:
            self._fill(seconds)
        except TimeoutError:
            return not self._buffer
        return False

    def pending(self) -> bytes:
        """Bytes received and not yet read as part of an answer."""
        return self._buffer
