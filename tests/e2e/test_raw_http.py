"""Requests no polite client sends, written to the gateway's socket byte by byte."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Processes, start_gateway, unique_service


@pytest.fixture(scope="module")
def gateway_port(nats_url: str, logs: Path) -> Iterator[int]:
    service = unique_service("raw")
    with Processes(logs, nats_url) as procs:
        procs.consumer("tests.support.apps:asgi_app", service)
        # The consumer is narun's: no Go decoder limits (a 60 kB query is fine here; with Go
        # consumers possible it is a 414, see test_go_interop.py).
        _, url = procs.gateway(
            [{"path": "/echo/", "methods": ["GET", "POST"], "service": service}],
            go_peer_limits=False,
        )
        yield int(url.rsplit(":", 1)[1])


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "path", ["/echo/caf\u00e9".encode(), b"/echo/\xff\xfe"], ids=["utf8", "invalid-utf8"]
)
def test_raw_non_ascii_bytes_in_the_request_line_are_400(gateway_port: int, path: bytes) -> None:
    # The HTTP parser refuses them (RFC 9112 allows only visible ASCII in the target).
    status, _ = exchange(
        gateway_port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 400


def test_invalid_percent_encoding_is_passed_to_the_app(gateway_port: int) -> None:
    status, body = exchange(
        gateway_port, b"GET /echo/%zz%4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    assert json.loads(body)["path"] == "/echo/%zz%4"


def test_malformed_request_line_is_400(gateway_port: int) -> None:
    status, _ = exchange(gateway_port, b"NOT A REQUEST\r\n\r\n")
    assert status == 400


def test_slow_header_sender_is_cut_off(nats_url: str, logs: Path) -> None:
    """A client that trickles header bytes is disconnected at header_timeout_seconds."""
    gateway, url = start_gateway(
        logs,
        nats_url,
        [{"path": "/x", "methods": ["GET"], "service": unique_service("slowloris")}],
        header_timeout_seconds=1,
    )
    port = int(url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /x HTTP/1.1\r\n")
            closed = False
            for i in range(40):  # one header byte every 0.1 s would take 4 s
                try:
                    sock.sendall(b"X"[:1] if i else b"X-Slow: ")
                    time.sleep(0.1)
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            elapsed = time.monotonic() - started
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            idle.settimeout(3)
            idle_started = time.monotonic()
            assert idle.recv(1) == b""  # a silent connection is closed too
            idle_elapsed = time.monotonic() - idle_started
    finally:
        assert gateway.stop() == 0, gateway.output()
    assert closed
    assert 0.9 < elapsed < 2.0
    assert 0.9 < idle_elapsed < 2.0


# 2 MB of request target is refused by the HTTP parser itself (400), before routing.
@pytest.mark.parametrize(("size", "status"), [(60_000, 200), (2_000_000, 400)])
def test_huge_query_strings(gateway_port: int, size: int, status: int) -> None:
    query = "q=" + "a" * size
    got, body = exchange(
        gateway_port,
        f"GET /echo/q?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert got == status
    if status == 200:
        assert json.loads(body)["query"] == query


def test_slow_body_sender_gets_408_at_the_route_timeout(nats_url: str, logs: Path) -> None:
    service = unique_service("slowbody")
    gateway, url = start_gateway(
        logs, nats_url, [{"path": "/x", "methods": ["POST"], "service": service, "timeout": 1}]
    )
    port = int(url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(
                b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
            )
            sock.settimeout(5)
            answer = sock.recv(65536)  # the client never sends the rest
            elapsed = time.monotonic() - started
    finally:
        assert gateway.stop() == 0, gateway.output()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 < elapsed < 2.0
