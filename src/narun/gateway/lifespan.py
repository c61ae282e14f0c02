"""The ASGI lifespan protocol, spoken once for the gateway's two ASGI apps.

:meth:`narun.gateway.server.Gateway.http_app` and :class:`narun.gateway.app.GatewayApp`
both open their NATS connection at ``lifespan.startup`` and drain it at
``lifespan.shutdown``; what they open differs, the conversation does not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from narun._types import Receive, Send

__all__ = ["serve_lifespan"]

logger = logging.getLogger(__name__)


async def serve_lifespan(
    receive: Receive,
    send: Send,
    *,
    start: Callable[[], Awaitable[object]],
    stop: Callable[[], Awaitable[object]],
) -> None:
    """Answer an ASGI ``lifespan`` scope: ``start()`` at startup, ``stop()`` at shutdown.

    A failing ``start()`` is logged and answered ``lifespan.startup.failed`` with its
    message (the server then exits); ``stop()`` is not called after it.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await start()
            except Exception as exc:
                logger.error("narun gateway cannot start: %s", exc)
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
