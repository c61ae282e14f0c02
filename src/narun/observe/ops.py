"""Operations endpoints of the gateway and of consumers, as a small ASGI app of their own.

Served on a listener apart from client traffic (the gateway's ``metrics_addr``,
``narun serve --metrics-addr``):

- ``/metrics``: a Prometheus registry, text exposition format;
- ``/healthz``: ``200 ok`` while the process runs (liveness);
- ``/readyz``: ``200 ok`` while the process can serve requests, else ``503`` and the
  reason (readiness: a load balancer should send no traffic then).

The app knows nothing about NATS: it asks an ``is_ready()`` callable.
:func:`nats_readiness` is the one narun passes, built from its NATS connection.
:class:`OpsServer` serves the app with uvicorn on the running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from typing import Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from narun._types import ASGIApp, Receive, Scope, Send
from narun.config.addr import parse_addr
from narun.protocol.textreply import send_body, send_text

__all__ = [
    "NATSState",
    "OpsApp",
    "OpsServer",
    "ReadyCheck",
    "UvicornServer",
    "bind",
    "nats_readiness",
]

logger = logging.getLogger(__name__)

ReadyCheck = Callable[[], tuple[bool, str]]
"""Returns ``(ready, reason)``; the reason is shown in the ``/readyz`` body."""

_METRICS_TYPE = CONTENT_TYPE_LATEST.encode()
_NO_STORE = ((b"cache-control", b"no-store"),)
_ALLOW = (b"allow", b"GET, HEAD")
_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class NATSState(Protocol):
    """The parts of a NATS client readiness looks at (``nats.aio.client.Client``)."""

    @property
    def is_connected(self) -> bool: ...
    @property
    def is_reconnecting(self) -> bool: ...
    @property
    def is_draining(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...


def nats_readiness(nc: NATSState | None) -> tuple[bool, str]:
    """Ready when connected to NATS; otherwise ``False`` and what is going on.

    ``None`` means there is no usable connection (starting, or stopping).
    """
    if nc is None:
        return False, "starting or stopping"
    if nc.is_connected:
        return True, "ok"
    if nc.is_reconnecting:
        return False, "NATS connection lost, reconnecting"
    if nc.is_draining:
        return False, "draining the NATS connection (shutting down)"
    if nc.is_closed:
        return False, "NATS connection closed"
    return False, "not connected to NATS"


class OpsApp:
    """ASGI app of ``/metrics``, ``/healthz`` and ``/readyz``; 404 for anything else."""

    def __init__(self, *, registry: CollectorRegistry, is_ready: ReadyCheck) -> None:
        self.registry = registry
        """Registry exposed on ``/metrics``."""
        self.is_ready = is_ready
        """Consulted on every ``/readyz`` request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        head = scope["method"] == "HEAD"
        if path not in _PATHS:
            await send_text(send, 404, "not found", _NO_STORE, head=head)
        elif not head and scope["method"] != "GET":
            await send_text(send, 405, "method not allowed", (_ALLOW, *_NO_STORE))
        elif path == "/metrics":
            metrics = generate_latest(self.registry)
            await send_body(send, 200, metrics, content_type=_METRICS_TYPE, head=head)
        elif path == "/readyz":
            ready, reason = self.is_ready()
            await send_text(send, 200 if ready else 503, reason, _NO_STORE, head=head)
        else:  # /healthz: answering at all is the point
            await send_text(send, 200, "ok", _NO_STORE, head=head)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind(addr: str, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``OSError`` if taken), for uvicorn to listen on."""
    host, port = parse_addr(addr)
    family, kind, proto, _, where = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(where)
    except OSError:
        sock.close()
        raise
    return sock


class UvicornServer(uvicorn.Server):
    """uvicorn's server, with signals left to the program (it re-raises them otherwise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class OpsServer:
    """An ASGI app (an :class:`OpsApp`) served by uvicorn on the running event loop."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port
        """The bound port (useful when the address asks for port 0)."""

    @classmethod
    async def start(cls, app: ASGIApp, addr: str, *, reuse_port: bool = False) -> OpsServer:
        """Listen on ``addr`` (``host:port``); ``OSError`` if the address is taken."""
        sock = bind(addr, reuse_port=reuse_port)
        server = UvicornServer(
            uvicorn.Config(
                app,
                lifespan="off",
                loop="none",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=1,
            )
        )
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"the server on {addr} stopped at startup")
            await asyncio.sleep(0.01)
        port: int = sock.getsockname()[1]
        return cls(server, task, port)

    async def stop(self) -> None:
        """Close the listener and wait (up to 5 s) for the server to finish."""
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 5)
        except Exception:
            logger.debug("operations server did not stop cleanly", exc_info=True)
