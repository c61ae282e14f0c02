"""Serve an ASGI or WSGI app as a NATS Micro service: connect, register, drain, close."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal, Unpack, cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from narun._types import ASGIApp, WSGIApp
from narun.consumer.host import HostOptions, ServiceHost, serve
from narun.consumer.http.asgi import ASGIBridge, Lifespan
from narun.consumer.http.endpoint import HTTPEndpoint, refuse
from narun.consumer.http.websocket import WebSocketSessions
from narun.consumer.http.wsgi import wsgi_to_asgi
from narun.consumer.service import Handler, Reply
from narun.errors import ConfigError
from narun.observe.metrics import RequestRecorder
from narun.protocol import wire
from narun.transport.stream import StreamHub

__all__ = ["Consumer", "Interface", "detect_interface", "run"]

logger = logging.getLogger(__name__)

Interface = Literal["auto", "asgi", "wsgi"]


def detect_interface(app: object) -> Literal["asgi", "wsgi"]:
    """Tell an ASGI app (async, 3 arguments) from a WSGI app (sync, 2 arguments)."""
    if not callable(app):
        raise ConfigError(f"{app!r} is not callable")
    call = app if inspect.isroutine(app) else app.__call__
    if inspect.iscoroutinefunction(call):
        return "asgi"
    try:
        params = [
            p
            for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) == 2:
        return "wsgi"
    if len(params) == 3:
        return "asgi"
    raise ConfigError(f"cannot tell whether {app!r} is ASGI or WSGI: pass interface='asgi'|'wsgi'")


class Consumer(ServiceHost):
    """An ASGI or WSGI app served as the NATS Micro service ``service``.

    An async context manager (see :class:`~narun.consumer.host.ServiceHost` for the
    shared options and the lifecycle): the app's lifespan startup runs before the
    service registers, its shutdown after the requests in flight have finished.
    ``interface`` is ``asgi``, ``wsgi`` or ``auto``; WSGI apps run on ``concurrency``
    threads.
    """

    endpoint = wire.HTTP_SERVICE_ENDPOINT
    stream = "default"
    connection_name = "narun consumer"
    service_metadata = {wire.STREAM_METADATA: "1"}

    def __init__(
        self,
        app: ASGIApp | WSGIApp,
        *,
        interface: Interface = "auto",
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(**options)
        kind = detect_interface(app) if interface == "auto" else interface
        self.interface = kind
        self.app: ASGIApp = (
            wsgi_to_asgi(cast(WSGIApp, app), workers=self.concurrency)
            if kind == "wsgi"
            else cast(ASGIApp, app)
        )
        self._lifespan: Lifespan | None = None
        self._hub: StreamHub | None = None
        self._endpoint: HTTPEndpoint | None = None
        self._websockets: WebSocketSessions | None = None
        self._ws_sub: Subscription | None = None

    def _metadata(self) -> dict[str, str]:
        # WSGI has no WebSockets: such a consumer neither says nor serves it.
        if self.interface == "wsgi":
            return self.service_metadata
        return {**self.service_metadata, wire.WEBSOCKET_METADATA: "1"}

    async def _open(self) -> None:
        self._lifespan = Lifespan(self.app)
        await self._lifespan.startup()

    async def _connected(self, nc: Client) -> tuple[str, ...]:
        # Streams: one inbox wildcard for every stream of this instance, and the
        # subject on which a gateway cancels a request (every instance hears it).
        self._hub = StreamHub(nc)
        await self._hub.start()

        async def on_cancel(msg: Msg) -> None:
            if self._endpoint is not None:
                self._endpoint.cancel(msg.data.decode("ascii", "replace"))

        await nc.subscribe(wire.cancel_subject(self.service), cb=on_cancel)
        if self.interface == "asgi":
            # WebSocket openings: any instance (queue group), outside the request limit.
            state = self._lifespan.state if self._lifespan is not None else None
            self._websockets = WebSocketSessions(self.app, self._hub, state=state)
            self._ws_sub = await nc.subscribe(
                wire.websocket_subject(self.service),
                queue=wire.QUEUE_GROUP,
                cb=self._websockets.on_msg,
            )
        return (wire.stream_subject(self.service),)

    def _handler(self, nc: Client, recorder: RequestRecorder | None) -> Handler:
        state = self._lifespan.state if self._lifespan is not None else None
        self._endpoint = HTTPEndpoint(
            ASGIBridge(self.app, state=state),
            metrics=recorder,
            default_deadline=self.default_deadline,
            hub=self._hub,
            stream_subject=wire.stream_subject(self.service),
        )
        return self._endpoint

    def _refusal(self) -> Callable[[Msg], Reply]:
        return refuse  # Binary HTTP 503 for Go gateways, which read no ADR-32 errors

    async def _close(self) -> None:
        if self._ws_sub is not None:
            try:
                await self._ws_sub.unsubscribe()
            except Exception:
                logger.debug("WebSocket subject unsubscribe failed", exc_info=True)
            self._ws_sub = None
        if self._websockets is not None:
            await self._websockets.stop()
        if self._hub is not None:
            await self._hub.stop()
        if self._lifespan is not None:
            await self._lifespan.shutdown()


def run(app: ASGIApp | WSGIApp, **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. Options are those of :class:`Consumer`."""
    asyncio.run(serve(Consumer(app, **options)))
