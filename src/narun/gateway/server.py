"""The gateway program: NATS connection, HTTP server, metrics server, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

import uvicorn
from nats.aio.client import Client

from narun._types import Receive, Scope, Send
from narun.config.addr import parse_addr
from narun.config.gateway import GatewayConfig
from narun.gateway.discovery import RouteDiscovery
from narun.gateway.edge import Edge
from narun.gateway.front import Front, protocol_for
from narun.gateway.http import HTTPGateway
from narun.gateway.lifespan import serve_lifespan
from narun.gateway.routetable import Resolution
from narun.gateway.wake import Waker
from narun.observe.metrics import MULTIPROC_ENV, GatewayMetrics
from narun.observe.ops import OpsApp, OpsServer, UvicornServer, bind, nats_readiness
from narun.protocol.forwarded import TrustedProxies
from narun.transport.auth import redact_url
from narun.transport.connect import connect, drain
from narun.transport.requester import Requester

if TYPE_CHECKING:
    from narun.gateway.grpc import GRPCGateway

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
        self.edge = Edge(
            self.http,
            trusted_proxies=TrustedProxies(config.trusted_proxies),
            max_header_bytes=config.max_header_bytes,
            max_body_bytes=config.max_body_bytes,
            metrics=self.metrics,
        )
        """``http`` behind mount-prefix handling, size caps and forwarded headers."""
        self._ops: OpsServer | None = None
        self.shutting_down = False
        """Set on SIGTERM/SIGINT: ``/readyz`` and gRPC health say so at once."""
        # gRPC (narun.gateway.grpc, imported lazily: grpcio is an optional dependency)
        self.grpc: GRPCGateway | None = None
        self.grpc_grace = 10.0
        """Seconds in-flight gRPC calls get to finish on :meth:`stop`."""
        self.discovery: RouteDiscovery | None = None
        """Listens to route claims when the config has ``dynamic_routes``."""
        self.reuse_port = False
        """Bind with SO_REUSEPORT and serve the metrics of every worker (``--workers``)."""

    async def start(self, *, metrics_server: bool = True, grpc_server: bool = True) -> None:
        """Connect to NATS (failing fast if it is unreachable), start gRPC and metrics servers."""
        self.nc = await connect(
            self.config.nats_url, name="narun gateway", auth=self.config.nats_auth
        )
        requester = Requester(self.nc)
        await requester.start()
        self.requester = requester
        waker = None
        if self.config.wake_timeout_seconds > 0:
            waker = Waker(lambda: self.nc, timeout=self.config.wake_timeout_seconds)
            self.http.waker = waker
        # --- gRPC server (narun.gateway.grpc) ---
        grpc_claims = any(rule.grpc_package for rule in self.config.dynamic_routes)
        if grpc_server and self.config.grpc_addr and (self.config.grpc_routes or grpc_claims):
            from narun.gateway.grpc import GRPCGateway

            grpc_gateway = GRPCGateway(
                self.config,
                requester=lambda: self.requester,
                metrics=self.metrics,
                is_ready=self.readiness,
            )
            grpc_gateway.waker = waker
            await grpc_gateway.start()
            self.grpc = grpc_gateway
        elif grpc_server and self.config.grpc_addr:
            logger.warning("grpc_addr is set but no gRPC route is configured: no gRPC server")
        # --- end gRPC server ---
        if self.config.dynamic_routes:
            discovery = RouteDiscovery(
                self.config, on_change=self._routes_changed, metrics=self.metrics
            )
            await discovery.start(self.nc)
            self.discovery = discovery
        if metrics_server and self.config.metrics_addr:
            await self._start_metrics_server()
        logger.info(
            "gateway connected to NATS at %s (max_payload %d bytes)",
            redact_url(self.config.nats_url),
            self.nc.max_payload,
        )

    def _routes_changed(self, resolution: Resolution) -> None:
        self.http.set_dynamic_routes(resolution.http)
        if self.grpc is not None:
            self.grpc.set_dynamic_routes(resolution.grpc)

    async def stop(self) -> None:
        """Stop the gRPC server (in-flight calls finish), drain NATS, stop metrics."""
        discovery, self.discovery = self.discovery, None
        if discovery is not None:
            await discovery.stop()
        # --- gRPC server (narun.gateway.grpc) ---
        grpc_gateway, self.grpc = self.grpc, None
        if grpc_gateway is not None:
            await grpc_gateway.stop(self.grpc_grace)
        # --- end gRPC server ---
        requester, self.requester = self.requester, None
        if requester is not None:
            await requester.stop()
        if self.nc is not None:
            await drain(self.nc)
        ops, self._ops = self._ops, None
        if ops is not None:
            await ops.stop()

    async def _start_metrics_server(self) -> None:
        """Serve ``/metrics``, ``/healthz``, ``/readyz`` (:mod:`narun.observe.ops`)."""
        registry = self.metrics.registry
        if self.reuse_port and os.environ.get(MULTIPROC_ENV):
            # One of several workers: a scrape gets the sum over all of them.
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        app = OpsApp(registry=registry, is_ready=self.readiness)
        self._ops = await OpsServer.start(app, self.config.metrics_addr, reuse_port=self.reuse_port)
        host, _ = parse_addr(self.config.metrics_addr)
        logger.info(
            "metrics, health and readiness on http://%s:%d (/metrics, /healthz, /readyz)",
            host,
            self._ops.port,
        )

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)`` for ``/readyz`` and the gRPC health service."""
        if self.shutting_down:
            return False, "shutting down"
        # requester is None before start() finishes and once stop() begins
        return nats_readiness(None if self.requester is None else self.nc)

    async def http_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: lifespan opens/drains NATS, HTTP requests are forwarded."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.edge(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async def start() -> None:
            await self.start(metrics_server=False, grpc_server=False)

        await serve_lifespan(receive, send, start=start, stop=self.stop)


async def serve(
    config: GatewayConfig, *, graceful_timeout: float = 30.0, reuse_port: bool = False
) -> None:
    """Run the gateway until SIGINT/SIGTERM, then shut down gracefully.

    Shutdown order: stop accepting connections, let in-flight requests finish (bounded
    by ``graceful_timeout``), then drain NATS. ``reuse_port`` binds the listening
    sockets with SO_REUSEPORT, for several gateway processes on one port
    (:mod:`narun.gateway.workers`).
    """
    gateway = Gateway(config)
    gateway.reuse_port = reuse_port
    await gateway.start()
    front = Front(gateway.http, gateway.edge)
    gateway.metrics.registry.register(front.collector())
    host, port = parse_addr(config.server_addr)
    sockets = [bind(config.server_addr, reuse_port=True)] if reuse_port else None
    server = UvicornServer(
        uvicorn.Config(
            gateway.edge,
            host=host,
            port=port,
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-*: narun.gateway.edge, with trusted_proxies
            # httptools, plain requests without ASGI, one write per response,
            # bounded header reading
            http=protocol_for(front, config.header_timeout_seconds),
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
            gateway.shutting_down = True  # /readyz: 503 before the listener closes
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        logger.info("HTTP gateway listening on http://%s:%d", host, port)
        await server.serve(sockets=sockets)
    finally:
        await gateway.stop()
        logger.info("gateway stopped")
