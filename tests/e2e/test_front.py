"""The gateway's HTTP fast path, end to end: which requests take it, and that every
request handed to the ASGI path (or taken back from it) answers as before.

Raw sockets and httpx -> real gateway process -> real nats-server -> real consumers.
The gateway's ``narun_gateway_http_front_requests`` counter says which way each request
went (``fast``: served without ASGI; ``asgi``: handed to the ASGI app).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support import Processes, free_port, unique_service
from tests.support.apps import ALL


@dataclass
class Stack:
    url: str
    metrics: str
    host: str
    port: int


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    plain, streams, ws = unique_service("fplain"), unique_service("fstream"), unique_service("fws")
    routes: list[dict[str, Any]] = [
        {"path": "/echo/", "methods": ALL, "service": plain},
        {"path": "/status/", "methods": ALL, "service": plain},
        {"path": "/slow", "methods": ["GET"], "service": plain, "timeout": 1},
        {"path": "/sse", "methods": ["GET"], "service": streams},
        {"path": "/whole", "methods": ["GET"], "service": streams},
        {"path": "/upload", "methods": ["POST"], "service": streams},
        {"path": "/ws/", "methods": ["GET"], "service": ws, "websocket": True},
        {"path": "/nobody/", "methods": ["GET"], "service": unique_service("fnobody")},
    ]
    metrics_port = free_port()
    with Processes(logs, nats_url) as procs:
        procs.consumer("tests.support.apps:asgi_app", plain)
        procs.consumer("tests.support.stream_apps:asgi_app", streams)
        procs.consumer("tests.support.ws_apps:app", ws)
        _, url = procs.gateway(routes, metrics_addr=f"127.0.0.1:{metrics_port}", retry_seconds=0.2)
        port = int(url.rsplit(":", 1)[1])
        yield Stack(url, f"http://127.0.0.1:{metrics_port}/metrics", "127.0.0.1", port)


def ways(stack: Stack) -> dict[str, float]:
    text = httpx.get(stack.metrics, timeout=5).text
    found = re.findall(r'narun_gateway_http_front_requests_total\{way="(\w+)"\} ([0-9.e+]+)', text)
    return {way: float(value) for way, value in found}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in ("fast", "asgi")}


def exchange(
    stack: Stack, raw: bytes, methods: list[str], timeout: float = 10
) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send ``raw`` on one connection; read the responses to ``methods`` (in order).

    Returns (status, fields with lower-case names, body) for each; stops early at EOF.
    """
    out: list[tuple[int, dict[bytes, bytes], bytes]] = []
    with socket.create_connection((stack.host, stack.port), timeout=timeout) as sock:
        sock.sendall(raw)
        reader = _Reader(sock)
        for method in methods:
            head = reader.until(b"\r\n\r\n")
            if head is None:
                break
            line, *lines = head.split(b"\r\n")
            status = int(line.split(b" ")[1])
            fields = {}
            for field in lines:
                name, _, value = field.partition(b":")
                fields[name.strip().lower()] = value.strip()
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif fields.get(b"transfer-encoding") == b"chunked":
                body = b""
                while True:
                    size_line = reader.until(b"\r\n")
                    assert size_line is not None
                    size = int(size_line, 16)
                    chunk = reader.exactly(size + 2)
                    assert chunk is not None
                    if size == 0:
                        break
                    body += chunk[:-2]
            else:
                length = int(fields.get(b"content-length", b"0"))
                got = reader.exactly(length)
                assert got is not None
                body = got
            out.append((status, fields, body))
    return out


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def until(self, mark: bytes) -> bytes | None:
        while mark not in self.buffer:
            if not self._more():
                return None
        part, _, self.buffer = self.buffer.partition(mark)
        return part

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._more():
                return None
        part, self.buffer = self.buffer[:size], self.buffer[size:]
        return part


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_plain_requests_take_the_fast_path(stack: Stack) -> None:
    before = ways(stack)
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        got = client.post("/echo/x?a=1", content=b"hello", headers={"x-request-id": "rid-front-1"})
        assert got.status_code == 200
        doc = got.json()
        assert doc["method"] == "POST"
        assert doc["path"] == "/echo/x"
        assert doc["query"] == "a=1"
        assert doc["body_b64"] == "aGVsbG8="
        assert got.headers["x-request-id"] == "rid-front-1"
        assert client.get("/echo/y").json()["path"] == "/echo/y"
    assert delta(before, ways(stack)) == {"fast": 2, "asgi": 0}


def test_head_and_204_keep_their_body_rules(stack: Stack) -> None:
    before = ways(stack)
    answers = exchange(
        stack,
        get("/status/204") + b"HEAD /echo/h HTTP/1.1\r\nHost: gw\r\n\r\n" + get("/status/418"),
        ["GET", "HEAD", "GET"],
    )
    assert [a[0] for a in answers] == [204, 200, 418]
    assert answers[0][2] == b""
    assert b"content-length" not in answers[0][1]
    assert answers[1][2] == b""
    assert int(answers[1][1][b"content-length"]) > 0
    assert answers[2][2] == b"status 418"
    assert delta(before, ways(stack)) == {"fast": 3, "asgi": 0}


def test_pipelined_mix_of_fast_and_handed_over_requests(stack: Stack) -> None:
    chunked = (
        b"POST /echo/chunked HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    before = ways(stack)
    raw = get("/echo/1") + chunked + post("/echo/3", b"xyz") + get("/missing") + get("/echo/5")
    answers = exchange(stack, raw, ["GET", "POST", "POST", "GET", "GET"])
    assert [a[0] for a in answers] == [200, 200, 200, 404, 200]
    assert b'"path":"/echo/1"' in answers[0][2]
    assert b'"body_b64":"YWJjZGU="' in answers[1][2]  # abcde
    assert b'"body_b64":"eHl6"' in answers[2][2]  # xyz
    assert b'"path":"/echo/5"' in answers[4][2]
    assert delta(before, ways(stack)) == {"fast": 3, "asgi": 2}


def test_expect_100_continue_is_handed_over(stack: Stack) -> None:
    before = ways(stack)
    with socket.create_connection((stack.host, stack.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo/e HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"ok")
        rest = first[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while b'"body_b64"' not in rest:
            rest += sock.recv(65536)
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'"body_b64":"b2s="' in rest
    assert delta(before, ways(stack)) == {"fast": 0, "asgi": 1}


def test_body_in_a_later_read_waits_on_the_fast_path(stack: Stack) -> None:
    before = ways(stack)
    with socket.create_connection((stack.host, stack.port), timeout=10) as sock:
        sock.sendall(b"POST /echo/late HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(0.2)
        sock.sendall(b"cd")
        got = b""
        while b'"body_b64"' not in got:
            got += sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'"body_b64":"YWJjZA=="' in got
    assert delta(before, ways(stack)) == {"fast": 1, "asgi": 0}


def test_body_that_never_comes_is_408_at_the_route_timeout(stack: Stack) -> None:
    before = ways(stack)
    with socket.create_connection((stack.host, stack.port), timeout=10) as sock:
        # /slow's route timeout is 1 s: the fast path waits that long for the body.
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got.startswith(b"HTTP/1.1 408 ")
    assert delta(before, ways(stack)) == {"fast": 1, "asgi": 0}


def test_streamed_reply_and_upload(stack: Stack) -> None:
    before = ways(stack)
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        events = client.get("/sse?n=3&gap=0.05")
        assert events.status_code == 200
        assert events.text.count("data:") == 3
        assert "content-length" not in events.headers  # streamed, chunked
        whole = client.get("/whole?size=100000")
        assert whole.status_code == 200
        assert len(whole.content) == 100000
        upload = client.post("/upload", content=b"z" * 300_000)
        assert upload.status_code == 200
        assert upload.json()["size"] == 300_000
    # The SSE reply opened a stream (fast path, resumed in a task); /whole is unary but
    # large (fast); the 300 kB body is over what the fast path holds (ASGI).
    assert delta(before, ways(stack)) == {"fast": 2, "asgi": 1}


def test_websocket_opening_is_not_counted_and_works(stack: Stack) -> None:
    before = ways(stack)

    async def go() -> None:
        async with connect(stack.url.replace("http://", "ws://") + "/ws/echo") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"

    asyncio.run(go())
    # uvicorn takes WebSocket upgrades before any HTTP request starts.
    assert delta(before, ways(stack)) == {"fast": 0, "asgi": 0}


def test_no_responders_is_retried_the_asgi_way(stack: Stack) -> None:
    before = ways(stack)
    got = httpx.get(stack.url + "/nobody/x", timeout=10)
    assert got.status_code == 503
    assert got.headers["retry-after"] == "1"
    assert delta(before, ways(stack)) == {"fast": 1, "asgi": 1}


def test_timeout_and_client_gone(stack: Stack) -> None:
    got = httpx.get(stack.url + "/slow?seconds=3", timeout=10)
    assert got.status_code == 504
    with socket.create_connection((stack.host, stack.port), timeout=10) as sock:
        sock.sendall(get("/slow?seconds=2"))
    # The gateway is still fine after a client left mid-request.
    assert httpx.get(stack.url + "/echo/after", timeout=10).status_code == 200
