"""Streams under faults, with real processes: a process killed mid-stream, nats-server
restarted mid-stream, a slow client (bounded memory), and 1 GiB both ways.

A stream must end cleanly and promptly on both sides, never hang and never hand over
a corrupt body: the client either gets the whole body (checksum) or an incomplete one
(the chunked body is cut short).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from narun.transport.server import NATSServer
from tests.support import Proc, start_consumer, start_gateway, unique_service
from tests.support.stream_apps import pattern, pattern_digest

ASGI = "tests.support.stream_apps:asgi_app"
MiB = 1024 * 1024
IDLE = 1.5  # seconds: the stream idle timeout of these gateways


def _routes(service: str) -> list[dict[str, object]]:
    return [{"path": "/", "methods": ["GET", "POST"], "service": service}]


def _rss_mib(proc: Proc) -> float:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _marks(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_consumer_sigkill_mid_stream_ends_the_client_response(
    logs: Path, nats_url: str
) -> None:
    service = unique_service("killcons")
    consumer = start_consumer(logs, nats_url, ASGI, service)
    gateway, url = start_gateway(logs, nats_url, _routes(service), stream_idle_timeout_seconds=IDLE)
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as c,
            c.stream("GET", "/endless") as response,
        ):
            assert response.status_code == 200
            pieces = response.aiter_bytes()
            await anext(pieces)
            consumer.signal(signal.SIGKILL)
            killed = time.monotonic()
            broken = False
            try:
                async for _ in pieces:
                    assert time.monotonic() - killed < 10, "the response never ended"
            except (httpx.RemoteProtocolError, httpx.ReadError):
                broken = True
            ended = time.monotonic() - killed
        assert broken  # cut short, not a clean end: the client knows it is incomplete
        assert ended < IDLE + 3
        # The gateway keeps serving: with nobody left, a new request is a 503 at once.
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            assert (await c.get("/download", params={"size": 10})).status_code == 503
    finally:
        consumer.wait(10)
        assert gateway.stop() == 0, gateway.output()


async def test_gateway_sigkill_mid_stream_cancels_the_app(logs: Path, nats_url: str) -> None:
    service = unique_service("killgw")
    marks = logs / f"marks-{service}"
    consumer = start_consumer(logs, nats_url, ASGI, service, env={"NARUN_TEST_MARKS": str(marks)})
    gateway, url = start_gateway(logs, nats_url, _routes(service), stream_idle_timeout_seconds=IDLE)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            async with c.stream("GET", "/endless") as response:
                pieces = response.aiter_bytes()
                await anext(pieces)
                gateway.signal(signal.SIGKILL)
                killed = time.monotonic()
            while "cancelled endless" not in _marks(marks):
                assert time.monotonic() - killed < IDLE + 4, "the app was never cancelled"
                await asyncio.sleep(0.05)
        assert consumer.alive()
    finally:
        gateway.wait(10)
        assert consumer.stop() == 0, consumer.output()


async def test_nats_server_restart_mid_stream_never_corrupts(
    logs: Path, own_nats_server: NATSServer
) -> None:
    nats = own_nats_server
    service = unique_service("restartst")
    consumer = start_consumer(logs, nats.url, ASGI, service)
    gateway, url = start_gateway(logs, nats.url, _routes(service), stream_idle_timeout_seconds=IDLE)
    size = 512 * MiB
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as c,
            c.stream("GET", "/download", params={"size": size}) as response,
        ):
            assert response.status_code == 200
            digest = hashlib.sha256()
            got = 0
            broken = False
            started = time.monotonic()
            stopped = 0.0
            try:
                async for piece in response.aiter_bytes():
                    digest.update(piece)
                    got += len(piece)
                    if got >= 8 * MiB and not stopped:
                        nats.stop()
                        stopped = time.monotonic()
                        asyncio.get_running_loop().call_later(1.0, nats.start)
                    assert time.monotonic() - started < 60, "the stream hung"
            except (httpx.RemoteProtocolError, httpx.ReadError):
                broken = True
        # Frames were lost while the server was down: the stream must not look whole.
        assert stopped
        assert broken or (got == size and digest.hexdigest() == pattern_digest(size))
        assert got < size or not broken
        assert time.monotonic() - stopped < 15
        # Once NATS is back, streams work again.
        deadline = time.monotonic() + 20
        while True:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                again = await c.get("/download", params={"size": 3 * MiB})
            if again.status_code == 200:
                break
            assert time.monotonic() < deadline, again.status_code
            await asyncio.sleep(0.2)
        assert hashlib.sha256(again.content).hexdigest() == pattern_digest(3 * MiB)
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()


async def test_slow_client_keeps_memory_bounded(logs: Path, nats_url: str) -> None:
    service = unique_service("slowcl")
    consumer = start_consumer(logs, nats_url, ASGI, service)
    gateway, url = start_gateway(logs, nats_url, _routes(service))
    size = 256 * MiB
    try:
        base = {"gateway": _rss_mib(gateway), "consumer": _rss_mib(consumer)}
        peak = dict(base)
        digest = hashlib.sha256()
        got = 0
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as c,
            c.stream("GET", "/download", params={"size": size}) as response,
        ):
            async for piece in response.aiter_raw(64 * 1024):
                digest.update(piece)
                got += len(piece)
                if got < 32 * MiB:
                    await asyncio.sleep(0.002)  # a slow client while the app could race on
                if got % (4 * MiB) < len(piece):
                    for role, proc in (("gateway", gateway), ("consumer", consumer)):
                        peak[role] = max(peak[role], _rss_mib(proc))
        assert got == size
        assert digest.hexdigest() == pattern_digest(size)
        growth = {role: peak[role] - base[role] for role in base}
        print(f"RSS growth, 256 MiB to a slow client: {growth}")
        assert growth["gateway"] < 64, growth
        assert growth["consumer"] < 64, growth
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()


async def _upload(size: int) -> AsyncIterator[bytes]:
    for piece in pattern(size, seed=1):
        yield piece


@pytest.mark.parametrize(
    "app", ["tests.support.stream_apps:asgi_app", "tests.support.stream_apps:wsgi_app"]
)
async def test_one_gib_both_ways_byte_exact(logs: Path, nats_url: str, app: str) -> None:
    service = unique_service("gib")
    consumer = start_consumer(logs, nats_url, app, service)
    gateway, url = start_gateway(logs, nats_url, _routes(service), request_timeout_seconds=60)
    size = 1024 * MiB
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            started = time.monotonic()
            digest = hashlib.sha256()
            got = 0
            async with c.stream("GET", "/download", params={"size": size}) as response:
                assert response.status_code == 200
                async for piece in response.aiter_raw(256 * 1024):
                    digest.update(piece)
                    got += len(piece)
            down = time.monotonic() - started
            assert got == size
            assert digest.hexdigest() == pattern_digest(size)

            started = time.monotonic()
            response = await c.post("/upload", content=_upload(size))
            up = time.monotonic() - started
            assert response.status_code == 200, response.text
            doc = json.loads(response.content)
            assert doc["size"] == size
            assert doc["sha256"] == pattern_digest(size, seed=1)
        print(
            f"1 GiB through narun ({app}): down {size / down / MiB:.0f} MiB/s, "
            f"up {size / up / MiB:.0f} MiB/s"
        )
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()
