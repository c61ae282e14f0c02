"""HTTPEndpoint: one Binary HTTP request per NATS message, within the caller's deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from narun._types import Receive, Scope, Send
from narun.consumer.http.asgi import ASGIBridge
from narun.consumer.http.endpoint import HTTPEndpoint
from narun.protocol import wire
from narun.protocol.bhttp import Request, decode_response, encode_request


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Sleeps for the query string's seconds, then answers with them."""
    seconds = float(scope["query_string"] or b"0")
    await asyncio.sleep(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["query_string"]})


def message(query: str, headers: dict[str, str]) -> Msg:
    request = Request("GET", "http", "example.com", f"/?{query}")
    fields: dict[str, Any] = {"subject": "svc", "data": encode_request(request)}
    return Msg(_client=None, headers=headers, **fields)  # type: ignore[arg-type]


async def test_a_request_within_its_deadline_is_answered() -> None:
    endpoint = HTTPEndpoint(ASGIBridge(app))
    reply = await endpoint(message("0.01", {wire.TIMEOUT_MS: "2000"}))
    assert reply.error is None
    response = decode_response(reply.data)
    assert (response.status, response.content) == (200, b"0.01")


async def test_a_request_past_its_deadline_gets_a_504_service_error() -> None:
    endpoint = HTTPEndpoint(ASGIBridge(app))
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await endpoint(message("5", {wire.TIMEOUT_MS: "50"}))
    assert loop.time() - started < 1
    assert reply.headers is not None
    assert reply.headers[wire.SERVICE_ERROR_CODE] == "504"
    assert reply.data == b""


async def test_without_a_deadline_the_app_runs_to_the_end() -> None:
    endpoint = HTTPEndpoint(ASGIBridge(app))
    reply = await endpoint(message("0.1", {}))
    assert decode_response(reply.data).content == b"0.1"


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
def test_default_deadline_must_be_a_number_of_seconds(seconds: float) -> None:
    from narun.consumer import Consumer
    from narun.errors import ConfigError
    from tests.support.apps import asgi_app

    with pytest.raises(ConfigError, match="default_deadline: must be"):
        Consumer(asgi_app, service="svc", default_deadline=seconds)


def test_default_deadline_is_that_of_a_go_gateway_unless_given() -> None:
    from narun.consumer import Consumer
    from tests.support.apps import asgi_app

    assert Consumer(asgi_app, service="svc").default_deadline == 30.0
    assert Consumer(asgi_app, service="svc", default_deadline=0).default_deadline == 0
