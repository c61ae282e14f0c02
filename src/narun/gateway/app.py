"""The gateway as an ASGI app to embed: in any ASGI server, or mounted in another app.

>>> from narun.gateway import create_app
>>> app = create_app("config.yaml")          # doctest: +SKIP  (uvicorn mymodule:app)

Served on its own, the ASGI lifespan opens and drains the NATS connection. Mounted in a
Starlette or FastAPI app, it does not get lifespan events (``Mount`` does not forward
them), so the parent enters :meth:`GatewayApp.lifespan` from its own lifespan::

    gateway = create_app("config.yaml")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with gateway.lifespan():
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/api", gateway)             # routes match the path below /api
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping

from prometheus_client import CollectorRegistry

from narun._types import Receive, Scope, Send
from narun.config.gateway import GatewayConfig, load_config
from narun.errors import NotConnected
from narun.gateway.lifespan import serve_lifespan
from narun.gateway.server import Gateway
from narun.protocol.textreply import RETRY_AFTER, send_text

__all__ = ["GatewayApp", "create_app"]

logger = logging.getLogger(__name__)


class GatewayApp:
    """An ASGI app forwarding HTTP requests to NATS Micro services, per a gateway config.

    Routes match the request path below the mount point (``scope["root_path"]``), and
    backends see that path too. Only the HTTP side runs here: the metrics listener is
    not started (mount ``prometheus_client.make_asgi_app(registry=app.registry)`` for
    that).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        """The validated gateway configuration."""
        self.gateway = Gateway(config)
        """The :class:`narun.gateway.server.Gateway` underneath (NATS connection, metrics)."""
        self._entered = 0
        self._warned = False

    @property
    def registry(self) -> CollectorRegistry:
        """Prometheus registry with the gateway's metrics."""
        return self.gateway.metrics.registry

    @property
    def connected(self) -> bool:
        """Whether the NATS connection is open (between lifespan startup and shutdown)."""
        return self.gateway.requester is not None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[GatewayApp]:
        """Open the NATS connection; on exit, drain it. Re-entrant (counted)."""
        if self._entered == 0:
            await self.gateway.start(metrics_server=False)
        self._entered += 1
        try:
            yield self
        finally:
            self._entered -= 1
            if self._entered == 0:
                await self.gateway.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan_protocol(receive, send)
            return
        if kind == "http" and not self.connected:
            if not self._warned:
                self._warned = True
                logger.error(
                    "narun gateway app got a request before its lifespan started: when it is "
                    "mounted, enter `async with gateway_app.lifespan():` in the parent's lifespan"
                )
            await send_text(send, 503, NotConnected.public_message, [RETRY_AFTER])
            return
        await self.gateway.edge(scope, receive, send)

    async def _lifespan_protocol(self, receive: Receive, send: Send) -> None:
        stack = contextlib.AsyncExitStack()
        await serve_lifespan(
            receive,
            send,
            start=lambda: stack.enter_async_context(self.lifespan()),
            stop=stack.aclose,
        )


def create_app(
    config: GatewayConfig | str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> GatewayApp:
    """Build the embeddable gateway app from a :class:`GatewayConfig` or a YAML file path.

    A path is read with :func:`narun.config.gateway.load_config` (``env``, default
    ``os.environ``, supplies the ``NARUN_*`` overrides). Raises :class:`ConfigError`.
    Nothing connects until the lifespan starts.
    """
    if not isinstance(config, GatewayConfig):
        config = load_config(config, env=env)
    return GatewayApp(config)
