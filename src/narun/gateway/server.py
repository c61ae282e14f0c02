"""The gateway program: NATS connection, HTTP server, metrics server, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Generator
from typing import Any

import uvicorn
from nats.aio.client import Client

from narun._types import Receive, Scope, Send
from narun.config import GatewayConfig, parse_addr
from narun.consumer.server import connect
from narun.gateway.http import HTTPGateway
from narun.gateway.requester import Requester
from narun.metrics import GatewayMetrics

__all__ = ["Gateway", "serve"]

logger = logging.getLogger(__name__)


class Gateway:
    """Everything one gateway process runs, built from a :class:`GatewayConfig`.

    ``http_app`` is a plain ASGI app. It also speaks the ASGI lifespan protocol, so it
    can be served by any ASGI server (or mounted) and will open and drain its own NATS
    connection; :func:`serve` instead calls :meth:`start` and :meth:`stop` itself.
    """

    def __init__(self, config: GatewayConfig, *, metrics: GatewayMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.nc: Client | None = None
        self.requester: Requester | None = None
        self.http = HTTPGateway(config, requester=lambda: self.requester, metrics=self.metrics)
        self._metrics_server: Any = None
        self._metrics_thread: threading.Thread | None = None

    async def start(self, *, metrics_server: bool = True) -> None:
        """Connect to NATS (failing fast if it is unreachable) and start the metrics server."""
        self.nc = await connect(self.config.nats_url, name="narun gateway")
        requester = Requester(self.nc)
        await requester.start()
        self.requester = requester
        if metrics_server and self.config.metrics_addr:
            self._start_metrics_server()
        logger.info(
            "gateway connected to NATS at %s (max_payload %d bytes)",
            self.config.nats_url,
            self.nc.max_payload,
        )

    async def stop(self) -> None:
        """Drain the NATS connection and stop the metrics server."""
        requester, self.requester = self.requester, None
        if requester is not None:
            await requester.stop()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                logger.debug("NATS drain failed; closing", exc_info=True)
                await self.nc.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    def _start_metrics_server(self) -> None:
        from prometheus_client import start_http_server

        host, port = parse_addr(self.config.metrics_addr)
        server, thread = start_http_server(port, addr=host, registry=self.metrics.registry)
        self._metrics_server, self._metrics_thread = server, thread
        logger.info("metrics on http://%s:%d/metrics", host, server.server_port)

    async def http_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: lifespan opens/drains NATS, HTTP requests are forwarded."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start(metrics_server=False)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to the gateway (it re-raises them otherwise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(config: GatewayConfig, *, graceful_timeout: float = 30.0) -> None:
    """Run the gateway until SIGINT/SIGTERM, then shut down gracefully.

    Shutdown order: stop accepting connections, let in-flight requests finish (bounded
    by ``graceful_timeout``), then drain NATS.
    """
    gateway = Gateway(config)
    await gateway.start()
    host, port = parse_addr(config.server_addr)
    server = _Server(
        uvicorn.Config(
            gateway.http,
            host=host,
            port=port,
            lifespan="off",
            http="httptools",
            loop="none",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(graceful_timeout)),
        )
    )
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if server.should_exit:
            logger.warning("second %s: forcing exit", sig.name)
            server.force_exit = True
        else:
            logger.info("%s received: shutting down gracefully", sig.name)
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        logger.info("HTTP gateway listening on http://%s:%d", host, port)
        await server.serve()
    finally:
        await gateway.stop()
        logger.info("gateway stopped")
