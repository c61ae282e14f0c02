"""The gateway's operations endpoints, as a small ASGI app of their own.

Served on ``metrics_addr``, apart from client traffic:

- ``/metrics``: the gateway's Prometheus registry, text exposition format;
- ``/healthz``: ``200 ok`` while the process runs (liveness);
- ``/readyz``: ``200 ok`` while the gateway can forward requests, else ``503`` and the
  reason (readiness: a load balancer should send no traffic then).

The app knows nothing about NATS: it asks an ``is_ready()`` callable.
:func:`nats_readiness` is the one the gateway passes, built from its NATS connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from narun._types import Receive, Scope, Send

__all__ = ["NATSState", "OpsApp", "ReadyCheck", "nats_readiness"]

ReadyCheck = Callable[[], tuple[bool, str]]
"""Returns ``(ready, reason)``; the reason is shown in the ``/readyz`` body."""

_TEXT = b"text/plain; charset=utf-8"
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

    ``None`` means the gateway has no usable connection (starting, or stopping).
    """
    if nc is None:
        return False, "gateway is starting or stopping"
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
        headers: list[tuple[bytes, bytes]] = []
        if path not in _PATHS:
            status, body, content_type = 404, b"not found\n", _TEXT
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, content_type = 405, b"method not allowed\n", _TEXT
            headers.append((b"allow", b"GET, HEAD"))
        else:
            status, body, content_type = self._answer(path)
        if path != "/metrics":
            headers.append((b"cache-control", b"no-store"))
        headers += [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})

    def _answer(self, path: str) -> tuple[int, bytes, bytes]:
        if path == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
        if path == "/readyz":
            ready, reason = self.is_ready()
            return (200 if ready else 503), reason.encode() + b"\n", _TEXT
        return 200, b"ok\n", _TEXT  # /healthz: answering at all is the point


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
