"""``python -m bench.websocket``: a WebSocket echo through narun against direct uvicorn.

Two figures per stack, measured in the same run: messages per second with ``--clients``
sockets each sending a 64-byte text message and waiting for its echo, for ``--seconds``;
and the round-trip delay of one message on an otherwise idle socket (p50 and p99 of
2,000). The client is the ``websockets`` package in this process (the same for both
stacks). Part of ``make bench`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect

from bench.pair import Started, start_direct, start_narun
from bench.procs import Procs

__all__ = ["WSResult", "main", "report", "run_websocket"]

SERVICE = "benchws"
APP = "bench.ws_app:app"
_MESSAGE = "x" * 64


@dataclass
class WSResult:
    """One stack's WebSocket figures."""

    stack: str
    messages_s: float
    rtt_p50_ms: float
    rtt_p99_ms: float


async def _throughput(url: str, clients: int, seconds: float) -> float:
    count = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal count
        async with connect(url, ping_interval=None) as ws:
            while time.monotonic() < stop:
                await ws.send(_MESSAGE)
                await ws.recv()
                count += 1

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    return count / (time.monotonic() - started)


async def _rtts(url: str, n: int) -> list[float]:
    out: list[float] = []
    async with connect(url, ping_interval=None) as ws:
        for _ in range(100):  # warm-up
            await ws.send(_MESSAGE)
            await ws.recv()
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send(_MESSAGE)
            await ws.recv()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _measure(stack: str, url: str, clients: int, seconds: float) -> WSResult:
    async def go() -> WSResult:
        await _throughput(url, clients, 1.0)  # warm-up
        rate = await _throughput(url, clients, seconds)
        rtts = await _rtts(url, 2000)
        return WSResult(stack, rate, statistics.median(rtts), statistics.quantiles(rtts, n=100)[98])

    return asyncio.run(go())


def run_websocket(workdir: Path, *, clients: int = 32, seconds: float = 5.0) -> list[WSResult]:
    """Measure direct uvicorn and narun (1 gateway, 1 consumer)."""
    results: list[WSResult] = []
    with Procs(workdir) as procs:
        direct = start_direct(procs, "uvicorn-ws", APP, "--ws", "websockets-sansio")
        results.append(_measure("uvicorn (direct)", _ws_url(direct), clients, seconds))
        narun = start_narun(
            procs,
            workdir,
            "ws",
            APP,
            SERVICE,
            [{"path": "/ws/", "methods": ["GET"], "service": SERVICE, "websocket": True}],
        )
        results.append(_measure("narun (1 gateway)", _ws_url(narun), clients, seconds))
    return results


def _ws_url(stack: Started) -> str:
    return "ws" + stack.url.removeprefix("http") + "/ws/echo"


def report(results: list[WSResult], clients: int) -> str:
    """The WebSocket section of the report."""
    direct = results[0]
    lines = [
        f"WebSocket echo (64-byte text; {clients} sockets for msg/s, one idle socket for delay)",
        f"{'stack':<20}{'msg/s':>10}{'x direct':>10}{'RTT p50 ms':>12}{'RTT p99 ms':>12}",
    ]
    for r in results:
        lines.append(
            f"{r.stack:<20}{r.messages_s:>10.0f}{r.messages_s / direct.messages_s:>9.2f}x"
            f"{r.rtt_p50_ms:>12.2f}{r.rtt_p99_ms:>12.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the WebSocket section alone."""
    p = argparse.ArgumentParser(
        prog="python -m bench.websocket", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--clients", type=int, default=32, help="sockets for msg/s (default 32)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of msg/s (default 5)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="narun-bench-ws-") as tmp:
        results = run_websocket(Path(tmp), clients=args.clients, seconds=args.seconds)
    print(report(results, args.clients))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
