"""A plain ASGI app that counts what reaches it, for the socket tests of the gateway's front.

Every request except to ``/seen`` is recorded by path (in this consumer process), so a test
can ask whether a request it sent was forwarded at all.

- ``/echo/...`` (any method): the request body back; ``x-method`` is the method and
  ``x-te`` the ``transfer-encoding`` the app saw (``-`` for none).
- ``/slow/...?seconds=S``: sleeps S seconds, then answers ``slept``.
- ``/stream/...?n=N``: N body messages ``part <i>\\n``, 50 ms apart, with no length.
- ``/empty/...``: 204 with no body.
- ``/hold/<id>``: waits up to 30 s; a cancellation is recorded as ``cancelled <id>``.
- ``/seen?prefix=P``: three numbers for the paths that start with P: requests begun,
  requests whose whole body was read, and cancellations.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from narun._types import Receive, Scope, Send

__all__ = ["app"]

_paths: list[str] = []
_whole: list[str] = []
_cancelled: list[str] = []


async def _body(path: str, receive: Receive) -> bytes:
    """The request body; recorded as whole only if it ended as the client framed it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            _whole.append(path)
            return b"".join(chunks)


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app (``tests.support.front_apps:app``)."""
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query: dict[str, Any] = parse_qs(scope["query_string"].decode())
    if path == "/seen":
        prefix = query.get("prefix", [""])[0]
        counts = [sum(p.startswith(prefix) for p in got) for got in (_paths, _whole, _cancelled)]
        await _answer(send, 200, " ".join(map(str, counts)).encode())
        return
    _paths.append(path)
    body = await _body(path, receive)
    if path.startswith("/echo/"):
        te = dict(scope["headers"]).get(b"transfer-encoding", b"-")
        await _answer(send, 200, body, [(b"x-method", scope["method"].encode()), (b"x-te", te)])
    elif path.startswith("/slow/"):
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
        await _answer(send, 200, b"slept")
    elif path.startswith("/stream/"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(int(query.get("n", ["3"])[0])):
            await send({"type": "http.response.body", "body": b"part %d\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/empty/"):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/hold/"):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            _cancelled.append(path)
            raise
        await _answer(send, 200, b"held")
    else:
        await _answer(send, 404, b"no such path")
