"""The app of the benchmark's streaming section: plain ASGI, so the servers are measured.

- ``GET /download?size=N``: N zero bytes in 64 KiB body messages (no Content-Length);
- ``POST /upload``: reads the body as it comes and answers its length;
- ``GET /sse?n=N&gap=S``: N events S seconds apart, each carrying ``time.time()``.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from narun._types import Receive, Scope, Send

_BLOCK = bytes(64 * 1024)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the three routes above (404 otherwise)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path == "/download":
        left = int(query.get("size", "0"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while left > 0:
            piece = _BLOCK if left >= len(_BLOCK) else _BLOCK[:left]
            left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/upload":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path == "/sse":
        n, gap = int(query.get("n", "10")), float(query.get("gap", "0.01"))
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            event = f"data: {time.time()!r}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
