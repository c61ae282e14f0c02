"""Serve an ASGI or WSGI app as a NATS Micro service: connect, register, drain, close."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

import nats
import nats.errors
from nats.aio.client import Client

from narun import wire
from narun._types import ASGIApp, WSGIApp
from narun.config import parse_addr, validate_service_name
from narun.consumer.asgi import ASGIBridge, Lifespan
from narun.consumer.http import HTTPEndpoint
from narun.consumer.service import MicroService
from narun.consumer.wsgi import wsgi_to_asgi
from narun.errors import ConfigError, NotConnected
from narun.metrics import ConsumerMetrics
from narun.natsauth import (
    NatsAuth,
    connect_options,
    connection_uses_tls,
    describe_connect_error,
    redact_url,
    telling_error,
    wants_tls,
)

if TYPE_CHECKING:
    from narun.ops import OpsServer

__all__ = ["Consumer", "Interface", "detect_interface", "run"]

logger = logging.getLogger(__name__)

Interface = Literal["auto", "asgi", "wsgi"]
DEFAULT_NATS_URL = "nats://localhost:4222"


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


async def connect(
    url: str,
    *,
    name: str,
    connect_attempts: int = 3,
    auth: NatsAuth | None = None,
    **options: Any,
) -> Client:
    """Connect to NATS with narun's defaults: reconnect forever, log state changes.

    The first connection is tried ``connect_attempts`` times per server, a second apart;
    failing that, :class:`NotConnected` says why. Once connected, reconnects never stop.
    ``auth`` (see :mod:`narun.natsauth`) is applied; a bad secret file raises
    :class:`ConfigError` before any attempt. Credentials in ``url`` never reach the log.
    """
    shown_url = redact_url(url)
    first_errors: list[BaseException] = []  # errors of the first connection's attempts
    tls_failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_disconnect() -> None:
        logger.warning("disconnected from NATS")

    async def on_reconnect() -> None:
        logger.info(
            "reconnected to NATS at %s",
            redact_url(nc.connected_url.geturl()) if nc.connected_url else shown_url,
        )

    async def on_error(exc: Exception) -> None:
        if not tls_failed.done() and len(first_errors) < 100:
            first_errors.append(exc)
        logger.warning("NATS: %s", exc)
        if isinstance(exc, ssl.SSLError) and not tls_failed.done():
            tls_failed.set_result(None)

    settings: dict[str, Any] = {
        "servers": [u.strip() for u in url.split(",")],
        "name": name,
        # A bounded number of tries at start (so a wrong URL fails clearly), then
        # reconnects forever once connected (see below).
        "max_reconnect_attempts": connect_attempts,
        "reconnect_time_wait": 1,
        "connect_timeout": 5,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
    }
    settings.update(connect_options(auth))
    settings.update(options)
    attempt = asyncio.ensure_future(nats.connect(**settings))
    try:
        # A failed TLS handshake leaves nats-py waiting forever for the socket to close
        # (nats-io/nats.py#718); a certificate problem is not transient: give up at once.
        try:
            await asyncio.wait((attempt, tls_failed), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            raise ssl.SSLError("TLS handshake failed")
        nc: Client = attempt.result()
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        # After the last attempt nats-py says only "no servers available": the error
        # of the attempts (refused, bad credentials, TLS) is the useful part.
        cause = telling_error(first_errors) or exc
        raise NotConnected(
            f"cannot connect to NATS at {shown_url}: {describe_connect_error(cause, auth, url=url)}"
        ) from None
    if wants_tls(url, auth) and connection_uses_tls(nc) is False:
        # nats-py starts TLS only when the server's INFO asks for it: never go on in
        # plain text when TLS was configured.
        await nc.close()
        raise NotConnected(
            f"cannot connect to NATS at {shown_url}: TLS options are set but the server "
            "did not start TLS (does its config have a tls block?)"
        )
    nc.options["max_reconnect_attempts"] = options.get("max_reconnect_attempts", -1)
    return nc


class Consumer:
    """An app served as the NATS Micro service ``service``, as an async context manager.

    On enter: connect, run the app's lifespan startup, register the service. On exit:
    stop taking requests, finish those in flight, run lifespan shutdown, drain NATS.

    ``metrics_addr`` (``host:port``, default off) serves ``/metrics``, ``/healthz`` and
    ``/readyz`` (:mod:`narun.ops`) with the consumer's ``metrics`` (a
    :class:`~narun.metrics.ConsumerMetrics`, made if not given; recorded only when one
    of the two is set).
    """

    def __init__(
        self,
        app: ASGIApp | WSGIApp,
        *,
        service: str,
        nats_url: str = DEFAULT_NATS_URL,
        interface: Interface = "auto",
        concurrency: int = 100,
        backlog: int | None = None,
        version: str = "0.1.0",
        description: str = "",
        drain_timeout: float = 30.0,
        nats_options: dict[str, Any] | None = None,
        nats_auth: NatsAuth | None = None,
        metrics_addr: str = "",
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.service = validate_service_name(service)
        kind = detect_interface(app) if interface == "auto" else interface
        if concurrency < 1:
            raise ConfigError(f"concurrency: must be at least 1 (got {concurrency!r})")
        self.interface = kind
        self.app: ASGIApp = (
            wsgi_to_asgi(cast(WSGIApp, app), workers=concurrency)
            if kind == "wsgi"
            else cast(ASGIApp, app)
        )
        self.nats_url = nats_url
        self.concurrency = concurrency
        if backlog is not None and backlog < 0:
            raise ConfigError(f"backlog: must be at least 0 (got {backlog!r})")
        self.backlog = backlog
        self.version = version
        self.description = description
        self.drain_timeout = drain_timeout
        self.nats_options = dict(nats_options or {})
        self.nats_auth = nats_auth
        self.nc: Client | None = None
        self.micro: MicroService | None = None
        if metrics_addr:
            parse_addr(metrics_addr)  # a ConfigError now rather than at start
        self.metrics_addr = metrics_addr
        self.metrics = metrics if metrics is not None or not metrics_addr else ConsumerMetrics()
        self.ops: OpsServer | None = None
        """The ``metrics_addr`` server while running."""
        self._lifespan: Lifespan | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Consumer:
        self._lifespan = Lifespan(self.app)
        await self._lifespan.startup()
        self.nc = await connect(
            self.nats_url,
            name=f"narun consumer {self.service}",
            auth=self.nats_auth,
            **self.nats_options,
        )
        bridge = ASGIBridge(self.app, state=self._lifespan.state)
        recorder = None if self.metrics is None else self.metrics.recorder(self.service, "default")
        self.micro = MicroService(
            self.nc,
            name=self.service,
            endpoint=wire.HTTP_SERVICE_ENDPOINT,
            handler=HTTPEndpoint(bridge, metrics=recorder),
            version=self.version,
            description=self.description,
            concurrency=self.concurrency,
            backlog=self.backlog,
        )
        await self.micro.start()
        if self.metrics_addr and self.metrics is not None:
            try:
                self.ops = await start_ops(self.metrics_addr, self.metrics, self.readiness)
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
        if self.micro is not None:
            await self.micro.stop(timeout=self.drain_timeout)
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                logger.debug("NATS drain failed; closing", exc_info=True)
                await self.nc.close()
        ops, self.ops = self.ops, None
        if ops is not None:
            await ops.stop()

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)`` of ``/readyz``: serving and connected to NATS."""
        return consumer_readiness(self.micro, self.nc, self._stop.is_set())

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from a signal handler)."""
        self._stop.set()

    async def serve_forever(self) -> None:
        """Serve until :meth:`request_stop` is called."""
        await self._stop.wait()


def consumer_readiness(
    micro: MicroService | None, nc: Client | None, stopping: bool
) -> tuple[bool, str]:
    """Ready once the service is registered, while connected and not stopping."""
    from narun.ops import nats_readiness

    if stopping:
        return False, "shutting down"
    if micro is None:
        return False, "starting"
    return nats_readiness(nc)


async def start_ops(
    addr: str, metrics: ConsumerMetrics, is_ready: Callable[[], tuple[bool, str]]
) -> OpsServer:
    """Serve ``/metrics`` (of ``metrics``), ``/healthz`` and ``/readyz`` on ``addr``."""
    from narun.ops import OpsApp, OpsServer

    ops = await OpsServer.start(OpsApp(registry=metrics.registry, is_ready=is_ready), addr)
    logger.info(
        "metrics, health and readiness on http://%s:%d (/metrics, /healthz, /readyz)",
        parse_addr(addr)[0],
        ops.port,
    )
    return ops


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM (once; a second signal is ignored while draining)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def _serve(consumer: Consumer) -> None:
    install_signal_handlers(consumer.request_stop)
    async with consumer:
        await consumer.serve_forever()
        logger.info("stopping: draining in-flight requests")


def run(app: ASGIApp | WSGIApp, **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. Options are those of :class:`Consumer`."""
    asyncio.run(_serve(Consumer(app, **options)))
