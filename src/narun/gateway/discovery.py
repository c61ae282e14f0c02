"""Route discovery: listen to the claims services announce, keep the routers current.

:class:`RouteDiscovery` subscribes to ``narun.routes.claim.*``, asks every instance to
announce at once (``narun.routes.query``), and feeds a
:class:`~narun.gateway.routetable.RouteTable`. Whenever the effective table changes it
calls ``on_change`` with the new :class:`~narun.gateway.routetable.Resolution`; each newly
refused claim is logged (WARNING) and counted once, not on every announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from narun.config.gateway import GatewayConfig
from narun.gateway.routetable import Refusal, Resolution, RouteTable
from narun.observe.metrics import GatewayMetrics
from narun.protocol.claims import CLAIM_WILDCARD, QUERY_SUBJECT, ClaimError, decode_claim

__all__ = ["RouteDiscovery"]

logger = logging.getLogger(__name__)

_SWEEP_SECONDS = 0.25


class RouteDiscovery:
    """Keeps a :class:`RouteTable` from the claims on NATS; see the module doc."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        on_change: Callable[[Resolution], None],
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = RouteTable(config)
        self.resolution = self.table.resolve()
        """The table in effect now."""
        self._on_change = on_change
        self._metrics = metrics
        self._clock = clock
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._refused: set[Refusal] = set()
        self._bad_subjects: set[str] = set()

    async def start(self, nc: Client) -> None:
        """Subscribe to claims and ask the instances to announce now."""
        self._sub = await nc.subscribe(CLAIM_WILDCARD, cb=self._on_claim)
        await nc.publish(QUERY_SUBJECT, b"")
        await nc.flush()
        self._sweeper = asyncio.create_task(self._sweep(), name="narun route expiry")

    async def stop(self) -> None:
        """Stop listening (the table in effect stays as it is)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_claim(self, msg: Msg) -> None:
        try:
            claim = decode_claim(msg.subject, msg.data)
        except ClaimError as exc:
            if msg.subject not in self._bad_subjects and len(self._bad_subjects) < 1000:
                self._bad_subjects.add(msg.subject)
                logger.warning("ignoring a bad route claim on %s: %s", msg.subject, exc)
            return
        if self.table.announce(claim, self._clock()):
            self._update()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            if self.table.expire(self._clock()):
                self._update()

    def _update(self) -> None:
        resolution = self.table.resolve()
        before = self.resolution
        self.resolution = resolution
        refused = set(resolution.refusals)
        for refusal in refused - self._refused:
            logger.warning(
                "route claim refused: service %r %s %s: %s (%s)",
                refusal.service,
                refusal.kind,
                refusal.pattern,
                refusal.reason,
                refusal.detail,
            )
            if self._metrics is not None:
                self._metrics.route_claims_refused.labels(refusal.service, refusal.reason).inc()
        self._refused = refused
        if self._metrics is not None:
            self._metrics.dynamic_routes.set(len(resolution.http) + len(resolution.grpc))
        if (resolution.http, resolution.grpc) != (before.http, before.grpc):
            now, then = _claimed(resolution), _claimed(before)
            for kind, pattern, service in sorted(now - then):
                logger.info("route claimed: %s %s -> %s", kind, pattern, service)
            for kind, pattern, service in sorted(then - now):
                logger.info("route dropped: %s %s (was %s)", kind, pattern, service)
            self._on_change(resolution)


def _claimed(resolution: Resolution) -> set[tuple[str, str, str]]:
    return {(e.kind, e.pattern, e.service) for e in resolution.entries if e.source == "claim"}
