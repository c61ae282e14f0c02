"""Hold a request while a service scaled to zero starts (``wake_timeout_seconds``).

When a request finds no instance (NATS "no responders", after the usual short retries),
:meth:`Waker.wake` asks the node runners on ``narun.wake.<service>``
(:mod:`narun.protocol.wake`). Nobody answering means nobody can start one: it returns
False at once and the request gets its 503. Otherwise it waits until the service answers
``$SRV.PING.<service>``, at most the wake timeout (and the request's own budget). All
requests that arrive for a service during one wake share it: one wake message, one wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.errors import NoResponders
from narun.protocol import wire
from narun.protocol.wake import wake_subject
from narun.transport.requester import Requester

__all__ = ["Waker", "call_waking"]

logger = logging.getLogger(__name__)

_ASK_SECONDS = 1.0
_PING_SECONDS = 0.25
_PAUSE_SECONDS = 0.05


class Waker:
    """Wakes services for the gateway; see the module doc."""

    def __init__(self, nc: Callable[[], Client | None], *, timeout: float) -> None:
        self._nc = nc
        self.timeout = timeout
        """Longest a request is held for a start (seconds)."""
        self._wakes: dict[str, asyncio.Task[bool]] = {}

    async def wake(self, service: str, budget: float) -> bool:
        """Whether ``service`` answers within ``min(timeout, budget)`` seconds after a wake."""
        task = self._wakes.get(service)
        if task is None:
            task = asyncio.create_task(self._wake(service), name=f"narun wake {service}")
            self._wakes[service] = task
            task.add_done_callback(lambda _: self._wakes.pop(service, None))
        try:
            async with asyncio.timeout(max(0.0, min(self.timeout, budget))):
                return await asyncio.shield(task)
        except TimeoutError:
            return False

    async def _wake(self, service: str) -> bool:
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return False
        started = time.monotonic()
        try:
            await nc.request(wake_subject(service), b"", timeout=_ASK_SECONDS)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False  # no node runner scales this service
        except nats.errors.Error as exc:
            logger.warning("cannot wake %s: %s", service, exc)
            return False
        logger.info("waking %s", service)
        while time.monotonic() - started < self.timeout:
            try:
                await nc.request(f"$SRV.PING.{service}", b"", timeout=_PING_SECONDS)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(_PAUSE_SECONDS)
                continue
            logger.info("%s woke after %.3fs", service, time.monotonic() - started)
            return True
        return False


async def call_waking(
    requester: Requester,
    waker: Waker,
    service: str,
    payload: bytes,
    headers: dict[str, str],
    timeout: float,
    retry: float,
    *,
    body_follows: bool = False,
) -> Msg:
    """:meth:`Requester.call`, but a "no responders" first wakes the service and waits.

    The first try is not retried: the wake is asked at once; only if nobody can wake the
    service (or a full instance refused the request) do the usual ``retry`` seconds follow.
    """
    started = time.monotonic()
    try:
        reply = await requester.call(
            service, payload, headers, timeout, 0, body_follows=body_follows
        )
    except NoResponders:
        woke = await waker.wake(service, timeout - (time.monotonic() - started))
    else:
        if retry <= 0 or not reply.headers or wire.OVERLOADED not in reply.headers:
            return reply
        woke = False  # refused unprocessed by a full instance: the usual retries
    left = max(0.001, timeout - (time.monotonic() - started))
    return await requester.call(
        service, payload, headers, left, 0 if woke else retry, body_follows=body_follows
    )
