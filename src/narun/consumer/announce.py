"""Announce the routes an instance serves, so gateways route to it without a config edit.

:class:`RouteAnnouncer` publishes the instance's claim (:mod:`narun.protocol.claims`) once
its service is registered, again every :data:`~narun.protocol.claims.ANNOUNCE_INTERVAL`
seconds and whenever a gateway asks on ``narun.routes.query``; on :meth:`stop` it
withdraws the claim, before the service drains, so gateways stop sending new requests
here while the ones in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from narun.protocol.claims import (
    ANNOUNCE_INTERVAL,
    QUERY_SUBJECT,
    Claim,
    claim_subject,
    encode_claim,
)

__all__ = ["RouteAnnouncer"]

logger = logging.getLogger(__name__)


class RouteAnnouncer:
    """Publishes ``claim`` on NATS until stopped; see the module doc."""

    def __init__(self, nc: Client, claim: Claim, *, interval: float = ANNOUNCE_INTERVAL) -> None:
        self._nc = nc
        self.claim = claim
        self._subject = claim_subject(claim.service)
        self._payload = encode_claim(claim)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Announce now, then keep announcing and answering gateways' queries."""
        self._sub = await self._nc.subscribe(QUERY_SUBJECT, cb=self._on_query)
        await self._announce()
        await self._nc.flush()
        self._task = asyncio.create_task(self._repeat(), name="narun route announcer")
        routes = [r.path for r in self.claim.http] + list(self.claim.grpc)
        logger.info("announcing routes %s for %s", ", ".join(routes), self.claim.service)

    async def stop(self) -> None:
        """Stop announcing and withdraw the claim (gateways drop this instance at once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._nc.is_connected:
            withdrawal = dataclasses.replace(self.claim, up=False)
            with contextlib.suppress(Exception):
                await self._nc.publish(self._subject, encode_claim(withdrawal))
                await self._nc.flush(timeout=2)

    async def _announce(self) -> None:
        if self._nc.is_connected:
            await self._nc.publish(self._subject, self._payload)

    async def _on_query(self, msg: Msg) -> None:
        await self._announce()

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._announce()
            except Exception as exc:  # a reconnect in progress: the next round retries
                logger.debug("route announcement failed: %s", exc)
