"""Run an ASGI application on Binary HTTP requests that arrive over NATS.

:func:`build_scope` is pure: it turns a decoded request into an ASGI HTTP scope.
:class:`ASGIBridge` calls the app with that scope, buffers the response and returns it
as a :class:`narun.protocol.bhttp.Response`; :class:`Lifespan` runs the app's lifespan protocol.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from narun._types import ASGIApp, Message, Scope
from narun.consumer.http.streaming import Exchange
from narun.observe import requestid, tracing
from narun.protocol.bhttp import Request, Response, encode_response
from narun.protocol.fields import end_to_end
from narun.protocol.stream import ABORT_INTERNAL, StreamError

__all__ = ["STREAMED", "ASGIBridge", "Lifespan", "build_scope"]

logger = logging.getLogger(__name__)

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_BODYLESS_STATUS = frozenset({204, 304})
_INTERNAL_ERROR = Response(
    status=500,
    headers=((b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")),
    content=b"Internal Server Error",
)


STREAMED = Response(status=200)
"""What :class:`ASGIBridge` returns for a response it sent as a stream (compare with ``is``)."""


def parse_client(addr: str | None) -> tuple[str, int] | None:
    """Parse ``host:port`` or ``[v6]:port`` from the client-address control header."""
    if not addr:
        return None
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@functools.lru_cache(maxsize=64)
def _server(authority: str, scheme: str) -> tuple[str, int | None] | None:
    # Cached: a service sees few distinct authorities (pure function of its arguments).
    if not authority:
        return None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and (":" not in host or host.endswith("]")):
        return host.strip("[]"), int(port)
    return authority.strip("[]"), 443 if scheme == "https" else 80


def build_scope(
    request: Request,
    *,
    client: tuple[str, int] | None = None,
    state: dict[str, Any] | None = None,
    root_path: str = "",
    request_id: str | None = None,
) -> Scope:
    """The ASGI HTTP scope for ``request``, as a server on the gateway's side would build it.

    ``request_id`` is added as an ``x-request-id`` field unless the request has one.
    """
    target = request.path or "/"
    raw_path, _, query = target.partition("?")
    # The target is ASCII from narun's gateway; a Go gateway passes raw bytes through
    # (request.path holds them as latin-1): raw_path and query_string get those bytes,
    # path their percent-decoded UTF-8.
    raw = raw_path.encode("latin-1")
    headers = [(name.lower(), value) for name, value in request.headers]
    if request.authority:
        for name, _ in headers:
            if name == b"host":
                break
        else:
            headers.insert(0, (b"host", request.authority.encode("ascii")))
    # narun's gateway puts the field last: look there before looking everywhere.
    if request_id is not None and (not headers or headers[-1][0] != requestid.HEADER):
        for name, _ in headers:
            if name == requestid.HEADER:
                break
        else:
            headers.append((requestid.HEADER, request_id.encode("ascii")))
    scheme = request.scheme or "http"
    scope: Scope = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method,
        "scheme": scheme,
        "path": raw_path
        if "%" not in raw_path and raw.isascii()
        else unquote_to_bytes(raw).decode("utf-8", "surrogateescape"),
        "raw_path": raw,
        "query_string": query.encode("latin-1"),
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": _server(request.authority, scheme),
        "extensions": {},
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


class ASGIBridge:
    """Calls an ASGI app once per request and collects its whole response."""

    def __init__(self, app: ASGIApp, *, state: dict[str, Any] | None = None) -> None:
        self.app = app
        self.state = state

    async def __call__(
        self,
        request: Request,
        *,
        client: tuple[str, int] | None,
        request_id: str | None = None,
        trace: Sequence[tuple[str, str]] | None = None,
        exchange: Exchange | None = None,
    ) -> Response:
        """Serve ``request``. App errors become a generic 500; details go to the log.

        ``request_id`` is the ``x-request-id`` the app sees if the request has none;
        ``trace`` (propagation fields such as ``traceparent``) replaces the request's.
        With an ``exchange`` (the gateway reads streams) the request body is read from
        it when it is streamed, and the response goes out as a stream when the app
        streams it or it is too large for one message: :data:`STREAMED` is returned
        then, the response having been sent.
        """
        scope = build_scope(request, client=client, state=self.state, request_id=request_id)
        if trace is not None:
            scope["headers"] = replace_fields(scope["headers"], trace)
        body_sent = False
        complete = False
        # Only an app that listens for the disconnect (receive() after the body) waits
        # on this; most never do, so it is made on first use.
        finished: asyncio.Event | None = None
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        streaming = False  # the response head went out as a stream
        body_streamed = exchange is not None and exchange.body_streamed
        if body_streamed and not any(k == b"content-length" for k, _ in scope["headers"]):
            # A body of unknown length, as an HTTP/1.1 server would show a chunked one
            # (WSGI frameworks read such a body only when they see this field).
            scope["headers"].append((b"transfer-encoding", b"chunked"))
        body_ended = not body_streamed
        bodyless = request.method == "HEAD"

        async def receive() -> Message:
            nonlocal body_sent, finished, body_ended
            if not body_sent:
                body_sent = True
                return {
                    "type": "http.request",
                    "body": request.content,
                    "more_body": not body_ended,
                }
            if not body_ended:
                assert exchange is not None
                try:
                    chunk = await exchange.read_body()
                except StreamError:
                    body_ended = True
                    return {"type": "http.disconnect"}
                if chunk is None:
                    body_ended = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                return {"type": "http.request", "body": chunk, "more_body": True}
            if not complete:
                if finished is None:
                    finished = asyncio.Event()
                await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers, complete, size, streaming
            kind = message["type"]
            if kind == "http.response.start":
                if status:
                    raise RuntimeError("http.response.start sent twice")
                status = int(message["status"])
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            elif kind == "http.response.body":
                if not status:
                    raise RuntimeError("http.response.body sent before http.response.start")
                if complete:
                    return
                body = message.get("body", b"")
                more = message.get("more_body", False)
                if streaming:
                    assert exchange is not None
                    if body and not bodyless:
                        await exchange.write(bytes(body))
                elif body and not bodyless and status not in _BODYLESS_STATUS:
                    chunks.append(bytes(body))
                    size += len(body)
                    if exchange is not None and (more or size > exchange.single_limit):
                        # The app streams, or the body is too large for one message.
                        streaming = True
                        first = b"".join(chunks)
                        chunks.clear()
                        part, rest = first[: exchange.single_limit], first[exchange.single_limit :]
                        fields = tuple(end_to_end(headers))
                        head = Response(status=status, headers=fields, content=part)
                        await exchange.send_head(encode_response(head), fin=False)
                        await exchange.write(rest)
                if not more:
                    if streaming:
                        assert exchange is not None
                        await exchange.end()
                    complete = True
                    if finished is not None:
                        finished.set()

        try:
            await self.app(scope, receive, send)
        except Exception:
            broken = None if exchange is None or exchange.channel is None else exchange.channel
            if broken is not None and broken.state.abort_error is not None:
                # The stream was aborted under the app (the client or gateway went away).
                logger.info("%s %s: %s", request.method, scope["path"], broken.state.abort_error)
                return STREAMED
            logger.exception("ASGI app raised on %s %s", request.method, scope["path"])
            if streaming:
                assert exchange is not None
                await exchange.abort(ABORT_INTERNAL, "the application raised")
                return STREAMED
            return _INTERNAL_ERROR
        finally:
            complete = True
            if finished is not None:
                finished.set()
        if streaming:
            assert exchange is not None
            channel = exchange.channel
            if channel is not None and not channel.state.out_ended and not channel.done:
                await exchange.end()  # the app returned without a last body message
            return STREAMED
        if not 200 <= status <= 599:
            logger.error(
                "ASGI app sent no valid response for %s %s (status %r)",
                request.method,
                scope["path"],
                status,
            )
            return _INTERNAL_ERROR
        # Connection-level fields describe a hop the app does not have (RFC 9110 7.6.1).
        return Response(status=status, headers=tuple(end_to_end(headers)), content=b"".join(chunks))


def replace_fields(
    headers: list[tuple[bytes, bytes]], fields: Sequence[tuple[str, str]]
) -> list[tuple[bytes, bytes]]:
    """``headers`` without the trace propagation fields, then ``fields`` (lower-case)."""
    drop = {name.encode("latin-1") for name in tracing.propagation_fields()}
    kept = [(name, value) for name, value in headers if name not in drop]
    kept += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in fields]
    return kept


class Lifespan:
    """Runs the ASGI lifespan protocol of an app in a background task.

    Apps that do not speak lifespan (they raise on the ``lifespan`` scope) are served
    without it, as uvicorn's ``lifespan="auto"`` does.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup = asyncio.get_running_loop().create_future()
        self._shutdown = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self.supported = True

    async def startup(self) -> None:
        """Send ``lifespan.startup``; raise RuntimeError if the app reports a failure."""
        self._task = asyncio.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        failure = await self._startup
        if failure is not None:
            raise RuntimeError(f"application startup failed: {failure}")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it."""
        if not self.supported or self._task is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        failure = await self._shutdown
        if failure is not None:
            logger.error("application shutdown failed: %s", failure)
        await self._task

    async def _run(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}

        async def receive() -> Message:
            return await self._inbox.get()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                self._startup.set_result(None)
            elif kind == "lifespan.startup.failed":
                self._startup.set_result(message.get("message", "") or "startup failed")
            elif kind == "lifespan.shutdown.complete":
                self._shutdown.set_result(None)
            elif kind == "lifespan.shutdown.failed":
                self._shutdown.set_result(message.get("message", "") or "shutdown failed")

        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            if not self._startup.done():
                # The app does not support lifespan: serve it without.
                self.supported = False
                logger.debug("ASGI lifespan not supported: %r", exc)
                self._startup.set_result(None)
            elif not self._shutdown.done():
                self._shutdown.set_result(repr(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            for fut in (self._startup, self._shutdown):
                if not fut.done():
                    fut.set_result(None)
