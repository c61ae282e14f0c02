"""Small apps for the Go-interop tests (tests/e2e/test_go_interop.py), run by narun serve.

- ``hop_by_hop``: ASGI; answers with every connection-level field an app could set.
- ``asgi_target`` / ``wsgi_target``: how the request target reached the app, as JSON
  (strings that hold bytes are shown as latin-1, one character per byte).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from narun._types import Receive, Scope, Send

HOP_FIELDS = [
    (b"connection", b"close, x-private"),
    (b"x-private", b"for this connection only"),
    (b"keep-alive", b"timeout=5"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
    (b"te", b"trailers"),
    (b"trailer", b"x-checksum"),
    (b"proxy-authenticate", b"Basic"),
    (b"proxy-connection", b"keep-alive"),
]
KEPT_FIELDS = [(b"content-type", b"text/plain"), (b"x-kept", b"yes")]


async def hop_by_hop(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [*KEPT_FIELDS[:1], *HOP_FIELDS, *KEPT_FIELDS[1:]]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"end to end"})


async def asgi_target(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    doc = {
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
    }
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_target(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    doc = {"PATH_INFO": environ["PATH_INFO"], "QUERY_STRING": environ["QUERY_STRING"]}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(doc).encode()]
