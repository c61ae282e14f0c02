"""Serve a WSGI application (Flask, Django's WSGI handler, ...) through the ASGI bridge.

WSGI apps block, so they run on a thread pool sized to the consumer's concurrency
(a2wsgi's). The request body is read from the ASGI messages as they come, and a response
iterable is sent piece by piece, so both stream (docs/protocol.md, *Streams*).

Two things are added to a2wsgi for streams: ``wsgi.input_terminated`` (Werkzeug reads a
body of unknown length, such as a streamed upload without ``Content-Length``, as empty
without it), and an end to the app's thread when its request is cancelled (the client or
the gateway went away): a2wsgi would leave the thread blocked for ever on a full queue;
here its next write raises, so the iterable is closed (generators see ``GeneratorExit``)
and the thread is free again.

a2wsgi builds the environ, but decodes ``QUERY_STRING`` as ASCII and ``PATH_INFO`` from
strict UTF-8, so raw bytes in the target (a Go gateway passes ``?q=café`` through as
UTF-8) would fail there. Such a request reaches a2wsgi with an ASCII-safe scope, and the
environ is then given the PEP 3333 strings: the bytes received, one character per byte.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import quote_from_bytes

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder

from narun._types import ASGIApp, Receive, Scope, Send, WSGIApp

__all__ = ["wsgi_to_asgi"]

_ENVIRON = "narun.wsgi_environ"
"""Scope key: environ entries that replace a2wsgi's (PEP 3333 forms of raw bytes)."""
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def wsgi_to_asgi(app: WSGIApp, *, workers: int) -> ASGIApp:
    """Wrap ``app`` as an ASGI app running on ``workers`` threads."""
    inner = cast(ASGIApp, _Middleware(cast(Any, _pep3333(app)), workers=workers))

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (
            scope["query_string"].isascii() and scope["path"].isascii()
        ):
            scope = _ascii_safe(scope)
        await inner(scope, receive, send)

    return asgi


def _ascii_safe(scope: Scope) -> Scope:
    """A scope a2wsgi can take, carrying the true ``QUERY_STRING`` / ``PATH_INFO``."""
    query: bytes = scope["query_string"]
    path: str = scope["path"]
    environ: dict[str, str] = {}
    if not query.isascii():
        environ["QUERY_STRING"] = query.decode("latin-1")
        query = quote_from_bytes(query, safe=_PRINTABLE_ASCII).encode("ascii")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (kept as surrogates)
        raw = path.encode("utf-8", "surrogateescape")
        environ["PATH_INFO"] = raw.decode("latin-1")
        path = raw.decode("utf-8", "replace")
    return {**scope, "query_string": query, "path": path, _ENVIRON: environ}


def _pep3333(app: WSGIApp) -> WSGIApp:
    def with_raw_target(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        scope = environ.get("asgi.scope")
        if scope is not None and _ENVIRON in scope:
            environ.update(scope[_ENVIRON])
        # The body ends where the ASGI messages say (what WSGI servers announce so).
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return with_raw_target


class RequestGone(Exception):
    """Raised in the app's thread when its request was cancelled."""


class _Responder(WSGIResponder):
    gone = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except BaseException:
            self.gone = True
            raise

    def send(self, message: Any) -> None:
        # Runs in the app's thread: wait for room in the queue, but not for ever.
        if self.gone:
            raise RequestGone("the request was cancelled")
        future = asyncio.run_coroutine_threadsafe(self.send_queue.put(message), loop=self.loop)
        while True:
            try:
                future.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                if self.gone:
                    future.cancel()
                    raise RequestGone("the request was cancelled") from None


class _Middleware(WSGIMiddleware):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            responder = _Responder(self.app, self.executor, self.send_queue_size)
            await responder(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
