"""The app every HTTP row of the benchmark serves: the seed's ``hello``, stripped down.

``POST /hello/`` with ``{"name": "NATS User"}`` answers ``{"message": "Hello, NATS User!"}``.
Plain ASGI (no framework), so the numbers measure the servers and proxies, not the app.
"""

from __future__ import annotations

import json
from typing import Any

from narun._types import Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Greet the caller by name; 404 for anything but ``POST /hello/``."""
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
    if scope["path"] != "/hello/" or scope["method"] != "POST":
        await _reply(send, 404, b'{"error":"not found"}')
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        payload: Any = json.loads(body)
        name = payload.get("name") if isinstance(payload, dict) else None
    except ValueError:
        name = None
    if not isinstance(name, str):
        await _reply(send, 400, b'{"error":"name is required"}')
        return
    await _reply(send, 200, json.dumps({"message": f"Hello, {name}!"}).encode())


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
