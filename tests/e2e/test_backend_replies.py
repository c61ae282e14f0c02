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
from tests.support import (
    gateway_to_responder,
    goshaped,
    start_consumer,
    unique_service,
)

Responder = Callable[[Msg], Awaitable[None]]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def call_through_gateway(
    logs: Path, nats_url: str, nc: Client, responder: Responder
) -> httpx.Response:
    async with (
        gateway_to_responder(logs, nats_url, nc, responder) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        response = await client.post("/x", content=b"ping")
        # The gateway keeps serving after whatever the backend did.
        again = await client.post("/x", content=b"ping")
        assert again.status_code == response.status_code
    return response


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


@pytest.mark.parametrize(("code", "status"), [("504", 504), ("503", 503), ("500", 502)])
async def test_service_error_code_alone_is_mapped_by_code(
    logs: Path, nats_url: str, nc: Client, code: str, status: int
) -> None:
    """``Nats-Service-Error-Code`` without ``Nats-Service-Error`` is still an error reply."""

    async def fail(msg: Msg) -> None:
        await nc.publish(msg.reply, b"", headers={"Nats-Service-Error-Code": code})

    response = await call_through_gateway(logs, nats_url, nc, fail)
    assert response.status_code == status
    assert response.text == "Backend service error\n"  # not "Bad reply ..."
    assert ("retry-after" in response.headers) is (status == 503)


async def test_go_body_on_204_304_and_head_is_dropped(
    logs: Path, nats_url: str, nc: Client
) -> None:
    """A Go consumer sends what the handler wrote, even on 204/304: no content goes out."""

    async def go_consumer(msg: Msg) -> None:
        request = bhttp.decode_request(msg.data)
        status = int(request.path.partition("?status=")[2] or 200)
        fields = [(b"content-type", b"text/plain"), (b"etag", b'"v1"')]
        await msg.respond(goshaped.response(status, fields, b"written by the handler"))

    async with (
        gateway_to_responder(logs, nats_url, nc, go_consumer, methods=("GET", "HEAD")) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for method, status in [("GET", 204), ("GET", 304), ("HEAD", 200), ("GET", 204)]:
            response = await client.request(method, "/x", params={"status": status})
            assert response.status_code == status
            assert response.content == b""
            assert response.headers["etag"] == '"v1"'
            assert "content-length" not in response.headers or method == "HEAD"
        # The connection survived every one of them (no aborted response).
        response = await client.get("/x", params={"status": 200})
        assert response.content == b"written by the handler"


@pytest.mark.parametrize(
    "body",
    [
        bytes(range(256)) * 40,  # 10240 bytes: chunks of 1, 4094, 4094 and 2051 bytes
        b"x",  # a single 1-byte chunk
        b"",  # known-length framing with content-length: 0
    ],
)
async def test_go_shaped_reply_is_served(
    logs: Path, nats_url: str, nc: Client, body: bytes
) -> None:
    async def go_like(msg: Msg) -> None:
        request = bhttp.decode_request(msg.data)
        assert request.method == "POST"
        assert (msg.headers or {}).get("Content-Type") == "application/bhttp"
        fields = [(b"content-type", b"application/octet-stream")]
        await msg.respond(goshaped.response(200, fields, body))

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


async def test_consumer_serves_go_chunked_request(logs: Path, nats_url: str, nc: Client) -> None:
    """A body the client sent chunked: Go forwards it in indeterminate framing (2)."""
    service = unique_service("from-go-chunked")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    try:
        body = b"chunked body " * 700  # 9100 bytes: three chunks of at most 4094
        fields = [(b"content-type", b"application/octet-stream")]
        message = goshaped.request(b"POST", b"localhost:8080", b"/raw", fields, body, chunked=True)
        assert message[0] == 2
        reply = await nc.request(
            service, message, timeout=5, headers={"Content-Type": "application/bhttp"}
        )
        response = bhttp.decode_response(reply.data)
        assert response.status == 200
        assert response.content == body
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
