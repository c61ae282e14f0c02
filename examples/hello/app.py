"""The seed's ``hello`` consumer as a plain ASGI app (no framework).

POST or PUT ``/hello/`` with ``{"name": "..."}``; anything else is 404.
Serve it with ``narun serve examples.hello.app:app --service hello``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from narun._types import Receive, Scope, Send

HOSTNAME = socket.gethostname()
BAD_PAYLOAD = b'{"error":"Invalid JSON payload: \'name\' field is required."}\n'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Greet the caller by name, as Go narun's example does."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/hello/" or scope["method"] not in ("POST", "PUT"):
        await _reply(send, 404, b"404 page not found\n", b"text/plain; charset=utf-8")
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
    if not isinstance(name, str) or not name:
        await _reply(send, 400, BAD_PAYLOAD, b"application/json")
        return
    answer = {
        "message": f"Hello, {name}! (processed by {scope['method']})",
        "received_path": scope["path"],
        "consumer_host": HOSTNAME,
    }
    data = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    await _reply(send, 200, data, b"application/json")


async def _reply(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-narun-processed-by", HOSTNAME.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
