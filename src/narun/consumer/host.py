"""What every consumer shares: options, the NATS connection, the service, the drain.

:class:`ServiceHost` runs one :class:`~narun.consumer.service.MicroService` on its own
NATS connection, with an optional ``/metrics``, ``/healthz``, ``/readyz`` server. The
HTTP consumer (:class:`narun.consumer.Consumer`) and the gRPC consumer
(:class:`narun.consumer.GRPCConsumer`) only say what handles a request and what to do
before connecting and after draining.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Required, Self, TypedDict

from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.config.addr import parse_addr, validate_service_name
from narun.consumer.announce import RouteAnnouncer
from narun.consumer.service import Handler, MicroService, Reply
from narun.errors import ConfigError
from narun.observe.metrics import ConsumerMetrics, RequestRecorder
from narun.protocol.claims import Claim, ClaimError, HTTPClaim
from narun.transport.connect import DEFAULT_NATS_URL, connect, drain

if TYPE_CHECKING:
    from narun.observe.ops import OpsServer
    from narun.transport.auth import NATSAuth

__all__ = ["DEFAULT_DEADLINE", "HostOptions", "ServiceHost", "install_signal_handlers", "serve"]

DEFAULT_DEADLINE = 30.0
"""Seconds a request without a deadline may run, by default: Go narun's gateway timeout."""

logger = logging.getLogger(__name__)


_NODE_ENV = {
    "NARUN_APP_NAME": "narun_app",
    "NARUN_INSTANCE_ID": "narun_instance_id",
    "NARUN_NODE_ID": "narun_node_id",
    "NARUN_RUN_ID": "narun_run_id",
}


def _node_metadata(env: Mapping[str, str]) -> dict[str, str]:
    # Under `narun node` the instance says who it is in its Micro metadata: the node waits
    # for this run's id in a PING reply before it calls the instance ready.
    return {key: env[var] for var, key in _NODE_ENV.items() if env.get(var)}


class HostOptions(TypedDict, total=False):
    """The keyword options every consumer takes (see :class:`ServiceHost`)."""

    service: Required[str]
    nats_url: str
    concurrency: int
    backlog: int | None
    version: str
    description: str
    drain_timeout: float
    default_deadline: float
    nats_options: dict[str, Any] | None
    nats_auth: NATSAuth | None
    metrics_addr: str
    metrics: ConsumerMetrics | None
    routes: Sequence[HTTPClaim]
    grpc_routes: Sequence[str]


class ServiceHost:
    """A NATS Micro service on its own connection, as an async context manager.

    On enter: :meth:`_open`, connect, register the service (and start the ops server).
    On exit: stop taking requests, finish those in flight (up to ``drain_timeout``),
    :meth:`_close`, drain NATS. ``metrics_addr`` (``host:port``, default off) serves
    ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`narun.observe.ops`) with ``metrics`` (a
    :class:`~narun.observe.metrics.ConsumerMetrics`, made if not given; recorded only when one
    of the two is set). ``routes`` (HTTP) and ``grpc_routes`` (gRPC service names) are claimed
    for this service: gateways whose ``dynamic_routes`` allow them route them here
    (:mod:`narun.consumer.announce`, ``docs/routing.md``).
    """

    endpoint: ClassVar[str]
    """ADR-32 endpoint name (``handler`` or ``grpc_handler``)."""
    stream: ClassVar[str]
    """``stream`` label of the consumer metrics (``default`` or ``grpc``)."""
    connection_name: ClassVar[str]
    """NATS connection name prefix, shown by the server's monitoring."""
    overload_reply: ClassVar[Reply | None] = None
    """How a full instance refuses a request (None: the HTTP default)."""
    service_metadata: ClassVar[dict[str, str]] = {}
    """Micro service ``metadata`` (``narun.stream`` for streaming consumers)."""

    def __init__(
        self,
        *,
        service: str,
        nats_url: str = DEFAULT_NATS_URL,
        concurrency: int = 100,
        backlog: int | None = None,
        version: str = "0.1.0",
        description: str = "",
        drain_timeout: float = 30.0,
        default_deadline: float = DEFAULT_DEADLINE,
        nats_options: dict[str, Any] | None = None,
        nats_auth: NATSAuth | None = None,
        metrics_addr: str = "",
        metrics: ConsumerMetrics | None = None,
        routes: Sequence[HTTPClaim] = (),
        grpc_routes: Sequence[str] = (),
    ) -> None:
        self.service = validate_service_name(service)
        try:
            self.claim = Claim(
                service=self.service,
                instance="-",
                http=tuple(routes),
                grpc=tuple(grpc_routes),
            )
        except ClaimError as exc:
            raise ConfigError(f"routes: {exc}") from None
        if concurrency < 1:
            raise ConfigError(f"concurrency: must be at least 1 (got {concurrency!r})")
        if backlog is not None and backlog < 0:
            raise ConfigError(f"backlog: must be at least 0 (got {backlog!r})")
        if not default_deadline >= 0:  # also refuses NaN
            raise ConfigError(
                f"default_deadline: must be a number of seconds >= 0 (got {default_deadline!r})"
            )
        if metrics_addr:
            parse_addr(metrics_addr)  # a ConfigError now rather than at start
        self.nats_url = nats_url
        self.concurrency = concurrency
        self.backlog = backlog
        self.version = version
        self.description = description
        self.drain_timeout = drain_timeout
        self.default_deadline = default_deadline
        """Seconds a request that carries no deadline (from a Go gateway) may run; 0: no bound."""
        self.nats_options = dict(nats_options or {})
        self.nats_auth = nats_auth
        self.metrics_addr = metrics_addr
        self.metrics = metrics if metrics is not None or not metrics_addr else ConsumerMetrics()
        self.nc: Client | None = None
        self.micro: MicroService | None = None
        self.ops: OpsServer | None = None
        """The ``metrics_addr`` server while running."""
        self.announcer: RouteAnnouncer | None = None
        """Claims ``routes`` and ``grpc_routes`` while running (if any)."""
        self._stop = asyncio.Event()

    # -- what subclasses provide ------------------------------------------------------

    async def _open(self) -> None:
        """Prepare before connecting (ASGI lifespan startup, thread pool, ...)."""

    def _handler(self, nc: Client, recorder: RequestRecorder | None) -> Handler:
        """The handler of the endpoint, once connected."""
        raise NotImplementedError

    def _metadata(self) -> dict[str, str]:
        """The Micro service metadata to register (``service_metadata`` by default)."""
        return self.service_metadata

    async def _connected(self, nc: Client) -> tuple[str, ...]:
        """Set up what needs the connection, before the service registers.

        Returns more subjects to serve like the endpoint (same handler, queue group).
        """
        return ()

    async def _close(self) -> None:
        """Clean up after the service drained, before NATS is drained."""

    def _refusal(self) -> Reply | Callable[[Msg], Reply] | None:
        """How a full instance refuses a request (default: :attr:`overload_reply`)."""
        return self.overload_reply

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._open()
        # An "auth" in nats_options wins over nats_auth.
        options: dict[str, Any] = {"auth": self.nats_auth, **self.nats_options}
        self.nc = await connect(
            self.nats_url, name=f"{self.connection_name} {self.service}", **options
        )
        metrics = self.metrics
        recorder = None if metrics is None else metrics.recorder(self.service, self.stream)
        extra = await self._connected(self.nc)
        self.micro = MicroService(
            self.nc,
            name=self.service,
            endpoint=self.endpoint,
            handler=self._handler(self.nc, recorder),
            version=self.version,
            description=self.description,
            concurrency=self.concurrency,
            backlog=self.backlog,
            overload_reply=self._refusal(),
            metadata={**_node_metadata(os.environ), **self._metadata()},
            extra_subjects=extra,
        )
        await self.micro.start()
        if self.claim.http or self.claim.grpc:
            claim = dataclasses.replace(
                self.claim, instance=self.micro.info().id, since=time.time()
            )
            self.announcer = RouteAnnouncer(self.nc, claim)
            await self.announcer.start()
        if self.metrics_addr and self.metrics is not None:
            try:
                self.ops = await _start_ops(self.metrics_addr, self.metrics, self.readiness)
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()  # /readyz: 503 from now on
        announcer, self.announcer = self.announcer, None
        if announcer is not None:
            await announcer.stop()  # gateways stop sending here; in-flight requests finish
        if self.micro is not None:
            await self.micro.stop(timeout=self.drain_timeout)
        await self._close()
        if self.nc is not None:
            await drain(self.nc)
        ops, self.ops = self.ops, None
        if ops is not None:
            await ops.stop()

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)`` of ``/readyz``: registered, connected, not stopping."""
        from narun.observe.ops import nats_readiness

        if self._stop.is_set():
            return False, "shutting down"
        if self.micro is None:
            return False, "starting"
        return nats_readiness(self.nc)

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from a signal handler)."""
        self._stop.set()

    async def serve_forever(self) -> None:
        """Serve until :meth:`request_stop` is called."""
        await self._stop.wait()


async def _start_ops(
    addr: str, metrics: ConsumerMetrics, is_ready: Callable[[], tuple[bool, str]]
) -> OpsServer:
    from narun.observe.ops import OpsApp, OpsServer

    ops = await OpsServer.start(OpsApp(registry=metrics.registry, is_ready=is_ready), addr)
    logger.info(
        "metrics, health and readiness on http://%s:%d (/metrics, /healthz, /readyz)",
        parse_addr(addr)[0],
        ops.port,
    )
    return ops


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM (a second signal changes nothing while draining)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def serve(host: ServiceHost) -> None:
    """Run ``host`` until SIGINT/SIGTERM, then drain and return."""
    install_signal_handlers(host.request_stop)
    async with host:
        await host.serve_forever()
        logger.info("stopping: draining in-flight requests")
