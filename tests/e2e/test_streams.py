"""Streams end to end: httpx -> gateway -> nats-server -> consumer -> FastAPI / Flask app.

Each test runs over both apps of ``tests.support.stream_apps``. Bodies are generated and
checksummed as they flow, never held whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from narun.protocol import bhttp, wire
from tests.support import Proc, gateway_to_responder, start_consumer, start_gateway, unique_service
from tests.support.stream_apps import BLOCK, pattern, pattern_digest

APPS = {"asgi": "tests.support.stream_apps:asgi_app", "wsgi": "tests.support.stream_apps:wsgi_app"}
MiB = 1024 * 1024


@dataclass
class Stack:
    kind: str
    service: str
    url: str
    marks: Path
    gateway: Proc
    consumer: Proc


@pytest.fixture(scope="module", params=sorted(APPS))
def stack(request: pytest.FixtureRequest, nats_url: str, logs: Path) -> Iterator[Stack]:
    kind: str = request.param
    service = unique_service("st" + kind)
    marks = logs / f"marks-{service}"
    marks.write_text("")
    env = {"NARUN_TEST_MARKS": str(marks)}
    consumer = start_consumer(logs, nats_url, APPS[kind], service, env=env)
    routes: list[dict[str, object]] = [
        {"path": "/", "methods": ["GET", "POST", "HEAD"], "service": service},
        {"path": "/upload", "methods": ["POST"], "service": service, "max_body_bytes": 64 * MiB},
        # A short stream idle timeout: heartbeats must keep quiet streams alive.
        {"path": "/sse", "methods": ["GET"], "service": service, "stream_idle_timeout": 0.6},
    ]
    gateway, url = start_gateway(logs, nats_url, routes)
    yield Stack(kind, service, url, marks, gateway, consumer)
    assert gateway.stop() == 0, gateway.output()
    assert consumer.stop() == 0, consumer.output()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
        yield c


async def test_sse_events_arrive_as_they_are_produced(client: httpx.AsyncClient) -> None:
    arrivals: list[float] = []
    produced: list[float] = []
    async with client.stream("GET", "/sse", params={"n": 3, "gap": 0.5}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("transfer-encoding") == "chunked"
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.time())
                produced.append(float(line[6:]))
    assert len(arrivals) == 3
    # Each event arrives soon after the app produced it, not all at the end.
    delays = [a - p for a, p in zip(arrivals, produced, strict=True)]
    assert max(delays) < 0.4, delays
    assert arrivals[2] - arrivals[0] > 0.8


async def test_a_quiet_stream_outlives_the_idle_timeout(client: httpx.AsyncClient) -> None:
    # Events 2 s apart on a route whose idle timeout is 0.6 s: heartbeats keep it open.
    async with client.stream("GET", "/sse", params={"n": 2, "gap": 2.0}) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert len(lines) == 2


@pytest.mark.parametrize("size", [5 * MiB, 5 * MiB + 12345])
async def test_download_larger_than_max_payload(client: httpx.AsyncClient, size: int) -> None:
    digest = hashlib.sha256()
    got = 0
    async with client.stream("GET", "/download", params={"size": size}) as response:
        assert response.status_code == 200
        async for piece in response.aiter_bytes():
            digest.update(piece)
            got += len(piece)
    assert got == size
    assert digest.hexdigest() == pattern_digest(size)


async def test_one_large_body_message_is_streamed(client: httpx.AsyncClient) -> None:
    response = await client.get("/whole", params={"size": 3 * MiB})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(3 * MiB)
    assert hashlib.sha256(response.content).hexdigest() == pattern_digest(3 * MiB)


async def _upload_body(size: int, pause_after: int = 0) -> AsyncIterator[bytes]:
    sent = 0
    for piece in pattern(size):
        yield piece
        sent += len(piece)
        if pause_after and sent == pause_after:
            await asyncio.sleep(1.0)


@pytest.mark.parametrize("declared", [True, False])
async def test_upload_larger_than_max_payload(client: httpx.AsyncClient, declared: bool) -> None:
    size = 6 * MiB + 7
    headers = {"content-length": str(size)} if declared else {}
    response = await client.post("/upload", content=_upload_body(size), headers=headers)
    assert response.status_code == 200, response.text
    doc = json.loads(response.content)
    assert doc["size"] == size
    assert doc["sha256"] == pattern_digest(size)


async def test_app_sees_the_first_chunk_before_the_upload_ends(client: httpx.AsyncClient) -> None:
    size = 4 * BLOCK
    started = time.time()
    response = await client.post("/upload", content=_upload_body(size, pause_after=BLOCK))
    ended = time.time()
    assert response.status_code == 200, response.text
    doc = json.loads(response.content)
    assert doc["size"] == size
    # The client paused 1 s after its first 64 KiB: the app had them before that.
    assert doc["first_at"] < ended - 0.7, (started, doc["first_at"], ended)


async def test_upload_over_the_route_limit_is_413(client: httpx.AsyncClient, stack: Stack) -> None:
    size = 65 * MiB
    # Refused from the declared length, before any body byte is sent.
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"413"
    # Without a declared length: refused when the count passes the limit.
    response = await client.post("/upload", content=_upload_body(size))
    assert response.status_code == 413


async def test_small_requests_keep_the_single_message_form(client: httpx.AsyncClient) -> None:
    response = await client.get("/whole", params={"size": 1000})
    assert response.status_code == 200
    assert response.headers["content-length"] == "1000"
    assert "transfer-encoding" not in response.headers


def _marks(stack: Stack) -> list[str]:
    return stack.marks.read_text().splitlines()


async def _wait_mark(stack: Stack, mark: str, within: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if mark in _marks(stack):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{mark!r} not seen within {within}s: {_marks(stack)}")


async def test_client_gone_cancels_an_endless_stream(stack: Stack) -> None:
    before = _marks(stack).count("cancelled endless")
    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=10) as c,
        c.stream("GET", "/endless") as response,
    ):
        assert response.status_code == 200
        async for _ in response.aiter_bytes():
            break
    start = time.monotonic()
    while _marks(stack).count("cancelled endless") <= before:
        assert time.monotonic() - start < 3, "the app was not cancelled"
        await asyncio.sleep(0.05)


async def test_client_gone_cancels_a_long_unary_request(stack: Stack) -> None:
    if stack.kind == "wsgi":
        pytest.skip("a WSGI view blocks its thread: Python cannot cancel it")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
        task = asyncio.create_task(c.get("/slow", params={"seconds": 20}))
        await asyncio.sleep(0.5)
        task.cancel()
    took = await _wait_mark(stack, "cancelled slow", 3)
    assert took < 2


def test_gateway_and_consumer_stay_alive(stack: Stack) -> None:
    assert stack.gateway.alive()
    assert stack.consumer.alive()


# --- Go-shaped peers: never a frame, today's single-message behaviour ------------------


async def test_go_shaped_consumer_gets_whole_requests_and_413_beyond(
    nats_url: str, logs: Path
) -> None:
    seen: list[dict[str, str]] = []
    nc = await nats.connect(nats_url)
    try:

        async def go_like(msg: Msg) -> None:
            seen.append(dict(msg.headers or {}))
            request = bhttp.decode_request(msg.data)  # always a whole request, never a frame
            reply = bhttp.encode_response(bhttp.Response(status=200, content=request.content))
            await nc.publish(msg.reply, reply)  # Go replies carry no headers

        async with (
            gateway_to_responder(logs, nats_url, nc, go_like) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as c,
        ):
            small = await c.post("/x", content=b"hello")
            assert small.status_code == 200
            assert small.content == b"hello"
            chunked = await c.post("/x", content=_upload_body(3 * BLOCK))
            assert chunked.status_code == 200  # no streaming consumer: one message
            assert len(chunked.content) == 3 * BLOCK
            big = await c.post("/x", content=_upload_body(2 * MiB))
            assert big.status_code == 413
            declared = await c.post("/x", content=b"y" * (2 * MiB))
            assert declared.status_code == 413
    finally:
        await nc.close()
    assert len(seen) == 2  # the two that fit; nothing else reached it
    assert all(h.get(wire.STREAM) for h in seen)  # asked, and ignored by a Go peer
    assert not any(wire.STREAM_IDLE_MS in h for h in seen)  # the default idle timeout: implied


async def test_go_shaped_gateway_never_gets_a_frame(stack: Stack, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:

        async def ask(path: str) -> Msg:
            request = bhttp.Request(method="GET", scheme="", authority="x", path=path)
            return await nc.request(
                stack.service,
                bhttp.encode_request(request),
                timeout=10,
                headers={"Content-Type": "application/bhttp"},  # all a Go gateway sends
            )

        reply = await ask("/sse?n=3&gap=0.1")
        assert wire.STREAM_CREDIT not in (reply.headers or {})
        response = bhttp.decode_response(reply.data)
        assert response.status == 200
        assert response.content.count(b"data: ") == 3  # the whole stream, in one message
        reply = await ask(f"/download?size={2 * MiB}")
        headers = reply.headers or {}
        assert wire.STREAM_CREDIT not in headers
        assert headers.get(wire.SERVICE_ERROR_CODE) == "500"  # too large for one message
    finally:
        await nc.close()


async def test_access_log_line_has_the_stream_byte_counts(stack: Stack) -> None:
    size = 2 * MiB + 3
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
        response = await c.get("/download", params={"size": size})
    assert len(response.content) == size
    deadline = time.monotonic() + 5
    line = f" in=0 out={size}"
    while line not in stack.gateway.output():
        assert time.monotonic() < deadline, stack.gateway.output()[-2000:]
        await asyncio.sleep(0.05)
    # the consumer's line counts the bytes it sent as frames (the head's part aside)
    assert " in=0 out=" in stack.consumer.output()
