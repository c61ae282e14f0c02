"""What the gateway answers when a backend replies badly, and Go-narun-shaped peers.

The "backends" here are raw NATS subscribers on a real nats-server, so each reply is
exactly the bytes under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.protocol import bhttp
from tests.support import start_consumer, start_gateway, unique_service

Responder = Callable[[Msg], Awaitable[None]]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def call_through_gateway(
    logs: Path, nats_url: str, nc: Client, responder: Responder
) -> httpx.Response:
    service = unique_service("rogue")
    await nc.subscribe(service, queue="q", cb=responder)
    await nc.flush()
    gateway, url = start_gateway(
        logs, nats_url, [{"path": "/x", "methods": ["POST"], "service": service}]
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post("/x", content=b"ping")
            # The gateway keeps serving after whatever the backend did.
            again = await client.post("/x", content=b"ping")
            assert again.status_code == response.status_code
        return response
    finally:
        assert gateway.stop() == 0


async def test_undecodable_reply_is_502(logs: Path, nats_url: str, nc: Client) -> None:
    async def garbage(msg: Msg) -> None:
        await msg.respond(b"\x07this is not binary http")

    response = await call_through_gateway(logs, nats_url, nc, garbage)
    assert response.status_code == 502
    assert "binary http" not in response.text.lower()


async def test_service_error_reply_is_502_with_generic_body(
    logs: Path, nats_url: str, nc: Client
) -> None:
    async def fail(msg: Msg) -> None:
        headers = {"Nats-Service-Error": "db password wrong", "Nats-Service-Error-Code": "500"}
        await nc.publish(msg.reply, b"", headers=headers)

    response = await call_through_gateway(logs, nats_url, nc, fail)
    assert response.status_code == 502
    assert "password" not in response.text


async def test_go_shaped_indeterminate_reply_is_served(
    logs: Path, nats_url: str, nc: Client
) -> None:
    body = bytes(range(256)) * 40  # 10240 bytes: three chunks of at most 4094 as Go sends

    async def go_like(msg: Msg) -> None:
        request = bhttp.decode_request(msg.data)
        assert request.method == "POST"
        assert (msg.headers or {}).get("Content-Type") == "application/bhttp"
        fields = b"\x0ccontent-type\x18application/octet-stream\x00"
        chunks = b""
        for i in range(0, len(body), 4094):
            piece = body[i : i + 4094]
            chunks += bytes([0x40 | (len(piece) >> 8), len(piece) & 0xFF]) + piece
        reply = b"\x03" + b"\x40\xc8" + fields + chunks + b"\x00" + b"\x00"
        await msg.respond(reply)

    response = await call_through_gateway(logs, nats_url, nc, go_like)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(body))


async def test_consumer_serves_go_shaped_request(logs: Path, nats_url: str, nc: Client) -> None:
    """A Go gateway's request: known-length, empty scheme, sorted lower-case fields."""
    service = unique_service("from-go")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    try:
        fields = [(b"accept", b"*/*"), (b"content-length", b"5"), (b"user-agent", b"curl/8")]
        encoded = b"".join(bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in fields)
        control = b"\x04POST" + b"\x00" + b"\x0elocalhost:8080" + b"\x08/raw?a=1"
        message = b"\x00" + control + bytes([len(encoded)]) + encoded + b"\x05hello" + b"\x00"
        reply = await nc.request(
            service, message, timeout=5, headers={"Content-Type": "application/bhttp"}
        )
        response = bhttp.decode_response(reply.data)
        assert response.status == 200
        assert response.content == b"hello"
    finally:
        assert consumer.stop() == 0


async def test_consumer_answers_undecodable_request_with_service_error(
    logs: Path, nats_url: str, nc: Client
) -> None:
    service = unique_service("bad-input")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    try:
        reply = await nc.request(service, b"\x09garbage", timeout=5)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "400"
        assert reply.data == b""
    finally:
        assert consumer.stop() == 0
