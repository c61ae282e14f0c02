"""Requests no polite client sends, written to the gateway's socket byte by byte."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Proc, start_consumer, start_gateway, unique_service


@pytest.fixture(scope="module")
def gateway_port(nats_url: str, logs: Path) -> Iterator[int]:
    service = unique_service("raw")
    consumer = start_consumer(logs, nats_url, "tests.apps:asgi_app", service)
    gateway, url = start_gateway(
        logs, nats_url, [{"path": "/echo/", "methods": ["GET", "POST"], "service": service}]
    )
    procs: list[Proc] = [gateway, consumer]
    yield int(url.rsplit(":", 1)[1])
    for proc in procs:
        assert proc.stop() == 0, proc.output()


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
