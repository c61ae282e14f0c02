"""1,000 concurrent idle WebSockets through one gateway: memory per socket, idle CPU.

Prints the figures (``-s`` shows them; docs/websocket.md quotes them). The bounds
asserted are loose: they catch a leak or busy work per socket, not a slow machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from tests.support import start_consumer, start_gateway, unique_service

SOCKETS = 1000
IDLE_SECONDS = 11.0  # more than a heartbeat round (a third of the 30 s idle timeout)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_thousand_idle_websockets(nats_url: str, logs: Path) -> None:
    service = unique_service("wsmany")
    consumer = start_consumer(logs, nats_url, "tests.support.ws_apps:app", service)
    routes = [{"path": "/ws/", "methods": ["GET"], "service": service, "websocket": True}]
    gateway, url = start_gateway(logs, nats_url, routes)
    base = url.replace("http://", "ws://") + "/ws/echo"
    try:

        async def go() -> dict[str, float]:
            async with connect(base) as warm:  # imports and first-use allocations
                await warm.send("w")
                assert await warm.recv() == "w"
            before = (_rss(gateway.pid), _rss(consumer.pid))
            sockets: list[ClientConnection] = []
            for _ in range(0, SOCKETS, 100):
                sockets += await asyncio.gather(
                    *(connect(base, ping_interval=None) for _ in range(100))
                )
            await asyncio.sleep(1)
            after = (_rss(gateway.pid), _rss(consumer.pid))
            cpu0 = (_cpu(gateway.pid), _cpu(consumer.pid))
            await asyncio.sleep(IDLE_SECONDS)
            cpu1 = (_cpu(gateway.pid), _cpu(consumer.pid))
            # Every socket still works, both ways.
            await asyncio.gather(*(ws.send(f"n{i}") for i, ws in enumerate(sockets)))
            got = await asyncio.wait_for(asyncio.gather(*(ws.recv() for ws in sockets)), 60)
            assert list(got) == [f"n{i}" for i in range(SOCKETS)]
            await asyncio.gather(*(ws.close() for ws in sockets))
            return {
                "gateway_rss_per_socket": (after[0] - before[0]) / SOCKETS,
                "consumer_rss_per_socket": (after[1] - before[1]) / SOCKETS,
                "gateway_idle_cpu": (cpu1[0] - cpu0[0]) / IDLE_SECONDS,
                "consumer_idle_cpu": (cpu1[1] - cpu0[1]) / IDLE_SECONDS,
            }

        started = time.monotonic()
        figures = asyncio.run(go())
        print(
            f"\n{SOCKETS} idle WebSockets ({time.monotonic() - started:.1f}s): "
            f"gateway {figures['gateway_rss_per_socket'] / 1024:.1f} KiB/socket, "
            f"consumer {figures['consumer_rss_per_socket'] / 1024:.1f} KiB/socket; "
            f"idle CPU gateway {figures['gateway_idle_cpu']:.1%}, "
            f"consumer {figures['consumer_idle_cpu']:.1%} of a core"
        )
        assert figures["gateway_rss_per_socket"] < 256 * 1024
        assert figures["consumer_rss_per_socket"] < 256 * 1024
        assert figures["gateway_idle_cpu"] < 0.25
        assert figures["consumer_idle_cpu"] < 0.25
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()
