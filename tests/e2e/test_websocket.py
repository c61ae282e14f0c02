"""WebSockets end to end: websockets client -> gateway -> nats-server -> consumer -> Starlette."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import Proc, start_consumer, start_gateway, unique_service

APP = "tests.support.ws_apps:app"


@dataclass
class Stack:
    service: str
    url: str
    marks: Path
    gateway: Proc
    consumer: Proc


def _routes(service: str, idle: float = 30) -> list[dict[str, object]]:
    return [
        {
            "path": "/ws/",
            "methods": ["GET"],
            "service": service,
            "websocket": True,
            "stream_idle_timeout": idle,
        },
        {"path": "/plain/", "methods": ["GET"], "service": service},
    ]


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    service = unique_service("ws")
    marks = logs / f"marks-{service}"
    marks.write_text("")
    consumer = start_consumer(logs, nats_url, APP, service, env={"NARUN_TEST_MARKS": str(marks)})
    gateway, url = start_gateway(logs, nats_url, _routes(service))
    yield Stack(service, url.replace("http://", "ws://"), marks, gateway, consumer)
    assert gateway.stop() == 0, gateway.output()
    assert consumer.stop() == 0, consumer.output()


def _wait_mark(marks: Path, line: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in marks.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {line!r} in {marks.read_text()!r}")


def test_echo_text_binary_and_client_close(stack: Stack) -> None:
    async def go() -> None:
        async with connect(stack.url + "/ws/echo") as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            blob = bytes(range(256)) * 4000  # 1 MB: more than one frame, window-sized
            await ws.send(blob)
            assert await ws.recv() == blob
            for i in range(50):
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(50)] == [f"m{i}" for i in range(50)]
            await ws.close(4001, "bye")

    asyncio.run(go())
    _wait_mark(stack.marks, "disconnect 4001")


def test_app_close_code_and_reason_reach_the_client(stack: Stack) -> None:
    async def go() -> None:
        async with connect(stack.url + "/ws/echo") as ws:
            await ws.send("close 4321 see you")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 4321
            assert info.value.rcvd.reason == "see you"

    asyncio.run(go())


def test_subprotocol_negotiated_by_the_app(stack: Stack) -> None:
    async def go() -> None:
        async with connect(stack.url + "/ws/echo", subprotocols=["chat.v2", "chat.v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat.v2"
            await ws.send("x")
            assert await ws.recv() == "x"

    asyncio.run(go())


def test_refusals_are_http_statuses(stack: Stack) -> None:
    async def status(path: str) -> tuple[int, bytes]:
        with pytest.raises(InvalidStatus) as info:
            async with connect(stack.url + path):
                pass
        return info.value.response.status_code, bytes(info.value.response.body or b"")

    async def go() -> None:
        assert (await status("/ws/refuse"))[0] == 403  # close before accept
        assert await status("/ws/deny") == (418, b"no tea here")  # denial response
        assert (await status("/plain/x"))[0] == 403  # route without websocket: true
        assert (await status("/nowhere"))[0] == 404

    asyncio.run(go())


def test_app_failures(stack: Stack) -> None:
    async def go() -> None:
        async with connect(stack.url + "/ws/crash") as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1011
        with pytest.raises(InvalidStatus) as refused:
            async with connect(stack.url + "/ws/boom"):
                pass
        assert refused.value.response.status_code == 500
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as late:
            async with connect(stack.url + "/ws/slow", open_timeout=20):
                pass
        assert late.value.response.status_code == 504  # the route's timeout: 5 s
        assert 4 < time.monotonic() - started < 15

    asyncio.run(go())


def test_slow_client_slows_the_app_with_bounded_memory(stack: Stack) -> None:
    mib = 128

    def rss(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def go() -> None:
        before = rss(stack.gateway.pid), rss(stack.consumer.pid)
        # No permessage-deflate: the flood compresses so well that it would all fit in
        # the kernel's socket buffers.
        url = stack.url + f"/ws/flood?mib={mib}"
        async with connect(url, max_size=None, compression=None) as ws:
            first = await ws.recv()
            await asyncio.sleep(3)  # not reading: the app must wait, not run ahead
            assert "flood sent" not in stack.marks.read_text().splitlines()
            grown = rss(stack.gateway.pid) - before[0], rss(stack.consumer.pid) - before[1]
            assert max(grown) < 64 * 1024 * 1024, grown
            total = len(first)
            async for message in ws:  # ends at the app's close (1000)
                total += len(message)
            assert total == mib * 1024 * 1024
            assert ws.close_code == 1000

    asyncio.run(go())
    _wait_mark(stack.marks, "flood sent")


def test_ping_answered_at_the_gateway(stack: Stack) -> None:
    async def go() -> None:
        async with connect(stack.url + "/ws/echo") as ws:
            latency = await asyncio.wait_for(await ws.ping(), 5)
            assert latency >= 0
            await ws.send("after ping")
            assert await ws.recv() == "after ping"

    asyncio.run(go())


def test_consumer_without_websockets_is_refused_at_once(nats_url: str, logs: Path) -> None:
    # A WSGI consumer serves no WebSockets (like Go narun): no instance on <service>.ws.
    service = unique_service("wsno")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:wsgi_app", service)
    gateway, url = start_gateway(logs, nats_url, _routes(service))
    try:

        async def go() -> None:
            started = time.monotonic()
            with pytest.raises(InvalidStatus) as info:
                async with connect(url.replace("http://", "ws://") + "/ws/echo"):
                    pass
            assert info.value.response.status_code == 501
            assert time.monotonic() - started < 3  # at once, not after the route timeout

        asyncio.run(go())
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()


def _short_idle_stack(nats_url: str, logs: Path, prefix: str) -> Stack:
    service = unique_service(prefix)
    marks = logs / f"marks-{service}"
    marks.write_text("")
    consumer = start_consumer(logs, nats_url, APP, service, env={"NARUN_TEST_MARKS": str(marks)})
    gateway, url = start_gateway(logs, nats_url, _routes(service, idle=1.5))
    return Stack(service, url.replace("http://", "ws://"), marks, gateway, consumer)


def test_quiet_socket_survives_on_heartbeats(nats_url: str, logs: Path) -> None:
    s = _short_idle_stack(nats_url, logs, "wsq")
    try:

        async def go() -> None:
            async with connect(s.url + "/ws/echo", ping_interval=None) as ws:
                await asyncio.sleep(5)  # more than three idle timeouts without a message
                await ws.send("still here")
                assert await ws.recv() == "still here"

        asyncio.run(go())
    finally:
        assert s.gateway.stop() == 0, s.gateway.output()
        assert s.consumer.stop() == 0, s.consumer.output()


def test_consumer_sigkill_closes_the_client_with_1011(nats_url: str, logs: Path) -> None:
    s = _short_idle_stack(nats_url, logs, "wsk")
    try:

        async def go() -> float:
            async with connect(s.url + "/ws/echo") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                s.consumer.signal(signal.SIGKILL)
                started = time.monotonic()
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 15)
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1011
                return time.monotonic() - started

        took = asyncio.run(go())
        assert took < 6, took  # the idle timeout (1.5 s) and a little, never a hang
    finally:
        s.consumer.wait(10)
        assert s.gateway.stop() == 0, s.gateway.output()


def test_gateway_sigkill_disconnects_the_app(nats_url: str, logs: Path) -> None:
    s = _short_idle_stack(nats_url, logs, "wsg")
    try:

        async def go() -> None:
            ws = await connect(s.url + "/ws/echo")
            await ws.send("x")
            assert await ws.recv() == "x"
            s.gateway.signal(signal.SIGKILL)
            s.gateway.wait(10)
            with contextlib.suppress(Exception):
                await ws.close()

        asyncio.run(go())
        _wait_mark(s.marks, "disconnect 1006", timeout=8)
    finally:
        assert s.consumer.stop() == 0, s.consumer.output()


def test_consumer_sigterm_closes_open_sockets_with_1001(nats_url: str, logs: Path) -> None:
    s = _short_idle_stack(nats_url, logs, "wst")
    try:

        async def go() -> None:
            async with connect(s.url + "/ws/echo") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                s.consumer.signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 15)
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1001

        asyncio.run(go())
        assert s.consumer.wait(20) == 0, s.consumer.output()
    finally:
        assert s.gateway.stop() == 0, s.gateway.output()


def test_metadata_says_who_serves_websockets(stack: Stack, nats_url: str, logs: Path) -> None:
    wsgi_service = unique_service("wsmeta")
    wsgi = start_consumer(logs, nats_url, "tests.support.apps:wsgi_app", wsgi_service)
    service = stack.service

    async def metadata(name: str) -> dict[str, str]:
        nc = await nats.connect(nats_url)
        try:
            reply = await nc.request(f"$SRV.INFO.{name}", b"", timeout=5)
            info: dict[str, dict[str, str]] = json.loads(reply.data)
            return info["metadata"]
        finally:
            await nc.close()

    try:
        assert asyncio.run(metadata(service)).get("narun.websocket") == "1"
        assert "narun.websocket" not in asyncio.run(metadata(wsgi_service))
    finally:
        assert wsgi.stop() == 0, wsgi.output()
