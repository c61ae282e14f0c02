"""Serve a WSGI application (Flask, Django's WSGI handler, ...) through the ASGI bridge.

WSGI apps block, so they run on a thread pool sized to the consumer's concurrency
(a2wsgi's). The request body is read from the ASGI messages as they come, and a response
iterable is sent piece by piece, so both stream (docs/protocol.md, *Streams*).

Two things are added to a2wsgi: ``wsgi.input_terminated`` (Werkzeug reads a body of
unknown length, such as a streamed upload without ``Content-Length``, as empty without
it), and an end to the app's thread when its request is cancelled (the client or the
gateway went away): a2wsgi would leave the thread blocked for ever on a full queue;
here its next write raises, so the iterable is closed (generators see ``GeneratorExit``)
and the thread is free again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable
from typing import Any, cast

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder

from narun._types import ASGIApp, WSGIApp

__all__ = ["wsgi_to_asgi"]


def wsgi_to_asgi(app: WSGIApp, *, workers: int) -> ASGIApp:
    """Wrap ``app`` as an ASGI app running on ``workers`` threads."""
    return cast(ASGIApp, _Middleware(cast(Any, _terminated(app)), workers=workers))


def _terminated(app: WSGIApp) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return wrapped


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
