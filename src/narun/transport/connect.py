"""The NATS connection every narun program opens: defaults, auth, clear failures.

Shared by the gateway and the consumer (which never import each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from narun.errors import NotConnected
from narun.transport.auth import (
    NATSAuth,
    connect_options,
    connection_uses_tls,
    describe_connect_error,
    redact_url,
    telling_error,
    wants_tls,
)
from narun.transport.direct import raise_read_size

__all__ = ["DEFAULT_NATS_URL", "connect", "drain"]

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://localhost:4222"


async def connect(
    url: str,
    *,
    name: str,
    connect_attempts: int = 3,
    auth: NATSAuth | None = None,
    **options: Any,
) -> Client:
    """Connect to NATS with narun's defaults: reconnect forever, log state changes.

    The first connection is tried ``connect_attempts`` times per server, a second apart;
    failing that, :class:`NotConnected` says why. Once connected, reconnects never stop.
    ``auth`` (see :mod:`narun.transport.auth`) is applied; a bad secret file raises
    :class:`ConfigError` before any attempt. Credentials in ``url`` never reach the log.
    """
    shown_url = redact_url(url)
    holder: list[Client] = []  # the connection, once made (for the callbacks)
    first_errors: list[BaseException] = []  # errors of the first connection's attempts
    tls_failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_disconnect() -> None:
        if holder and (holder[0].is_closed or holder[0].is_draining):
            logger.debug("disconnected from NATS (closing)")
        else:
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
    # Before connecting: nats-py sizes the socket reader's buffer from it as it connects.
    raise_read_size()
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
        holder.append(nc)
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


async def drain(nc: Client) -> None:
    """Drain ``nc`` (pending messages go out, subscriptions finish); close if that fails."""
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except Exception:
        logger.debug("NATS drain failed; closing", exc_info=True)
        await nc.close()
