"""Steady HTTP traffic through a gateway, with every outcome counted (fault and overload tests)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Traffic:
    """Outcome of a stream of requests."""

    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    slowest: float = 0.0
    first_ok_after: dict[float, float] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + self.unanswered

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def errors(self) -> int:
        return self.sent - self.ok - self.unanswered

    def recovery_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the first OK answer after the last error."""
        last_error = max((t for t, s in self.timeline if t >= moment and s != 200), default=None)
        if last_error is None:
            return 0.0
        later_ok = [t for t, s in self.timeline if t > last_error and s == 200]
        return (min(later_ok) - moment) if later_ok else float("inf")

    def report(self, name: str) -> str:
        return (
            f"{name}: sent={self.sent} ok={self.ok} errors={self.errors} "
            f"unanswered={self.unanswered} statuses={dict(self.statuses)} "
            f"slowest={self.slowest:.2f}s"
        )


async def steady(
    url: str, path: str, *, seconds: float, rate: float, client_timeout: float, traffic: Traffic
) -> None:
    """Send ``rate`` requests per second for ``seconds``; record every outcome."""
    start = time.monotonic()

    async def one(client: httpx.AsyncClient) -> None:
        sent_at = time.monotonic()
        try:
            response = await client.get(path)
            status = response.status_code
        except httpx.HTTPError:
            traffic.unanswered += 1
            return
        elapsed = time.monotonic() - sent_at
        traffic.slowest = max(traffic.slowest, elapsed)
        traffic.statuses[status] += 1
        traffic.timeline.append((sent_at - start, status))

    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=client_timeout, limits=limits) as client:
        tasks = []
        n = int(seconds * rate)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
        await asyncio.gather(*tasks)


async def during(traffic_task: Awaitable[None], *steps: tuple[float, Callable[[], object]]) -> None:
    """Run the traffic while calling each step at its offset (seconds from now)."""
    start = time.monotonic()
    task = asyncio.ensure_future(traffic_task)
    for at, action in steps:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        await asyncio.to_thread(action)
    await task
