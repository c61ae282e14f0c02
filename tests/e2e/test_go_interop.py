"""Go narun peers on the wire: raw NATS clients playing a Go gateway or a Go consumer.

A Go gateway (narun-gw) sends a Go-shaped Binary HTTP request with only
``Content-Type: application/bhttp`` and reads only the Binary HTTP reply; a Go consumer
(nconsumer) replies with Go-shaped Binary HTTP. The messages are built in
``tests/support/goshaped.py``; everything else is real: nats-server, ``narun serve``,
``narun gateway``, httpx.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
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
    start_gateway,
    unique_service,
)
from tests.support.interop_apps import HOP_FIELDS, KEPT_FIELDS

GO_HEADERS = {"Content-Type": "application/bhttp"}
"""The only NATS header a Go gateway sends."""


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def go_gateway_request(nc: Client, service: str, message: bytes, timeout: float = 10) -> Msg:
    """What narun-gw does: one NATS request, Content-Type only, no narun headers."""
    return await nc.request(service, message, timeout=timeout, headers=GO_HEADERS)


# --- item 4: hop-by-hop fields ---------------------------------------------------------


async def test_consumer_strips_hop_by_hop_fields_of_the_app(
    logs: Path, nats_url: str, nc: Client
) -> None:
    service = unique_service("hop-consumer")
    consumer = start_consumer(logs, nats_url, "tests.support.interop_apps:hop_by_hop", service)
    try:
        message = goshaped.request(b"GET", b"localhost:8080", b"/", [(b"accept", b"*/*")])
        reply = await go_gateway_request(nc, service, message)
        response = bhttp.decode_response(reply.data)
        assert response.status == 200
        assert response.content == b"end to end"
        names = [name for name, _ in response.headers]
        for name, _ in HOP_FIELDS:
            assert name not in names
        assert [f for f in response.headers if f[0] != b"content-length"] == KEPT_FIELDS
    finally:
        assert consumer.stop() == 0


async def test_gateway_strips_hop_by_hop_fields_of_a_go_consumer(
    logs: Path, nats_url: str, nc: Client
) -> None:
    """A Go consumer passes on every field its handler set; the client gets none of those."""

    async def go_consumer(msg: Msg) -> None:
        await msg.respond(goshaped.response(200, [*KEPT_FIELDS, *HOP_FIELDS], b"end to end"))

    async with (
        gateway_to_responder(logs, nats_url, nc, go_consumer, methods=("GET",)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for _ in range(2):  # and the connection stays usable
            response = await client.get("/x")
            assert response.status_code == 200
            assert response.content == b"end to end"
            assert response.headers["x-kept"] == "yes"
            for name in ("x-private", "keep-alive", "upgrade", "te", "trailer"):
                assert name not in response.headers
            assert not [k for k in response.headers if k.startswith("proxy-")]
            assert response.headers.get("connection", "keep-alive") == "keep-alive"
            assert "transfer-encoding" not in response.headers


# --- item 1: raw UTF-8 in the request target ---------------------------------------------


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            "tests.support.interop_apps:asgi_target",
            {"path": "/café", "raw_path": "/caf\xc3\xa9", "query_string": "q=caf\xc3\xa9"},
        ),
        (
            # PEP 3333: the bytes received, one character per byte.
            "tests.support.interop_apps:wsgi_target",
            {"PATH_INFO": "/caf\xc3\xa9", "QUERY_STRING": "q=caf\xc3\xa9"},
        ),
    ],
)
async def test_consumer_accepts_raw_utf8_target_from_a_go_gateway(
    logs: Path, nats_url: str, nc: Client, app: str, expected: dict[str, str]
) -> None:
    """``curl '...?q=café'`` through narun-gw: the query's UTF-8 arrives raw.

    (Go escapes the path itself; raw bytes in the path are accepted all the same.)
    """
    service = unique_service("utf8-target")
    consumer = start_consumer(logs, nats_url, app, service)
    try:
        message = goshaped.request(b"GET", b"localhost:8080", b"/caf\xc3\xa9?q=caf\xc3\xa9")
        reply = await go_gateway_request(nc, service, message)
        assert not reply.headers, reply.headers  # not a service error
        response = bhttp.decode_response(reply.data)
        assert response.status == 200
        assert json.loads(response.content) == expected
    finally:
        assert consumer.stop() == 0


# --- item 2: no deadline and no ADR-32 error headers from a Go gateway --------------------


async def test_go_request_gets_the_default_deadline_as_binary_http_504(
    logs: Path, nats_url: str, nc: Client
) -> None:
    service = unique_service("go-deadline")
    consumer = start_consumer(
        logs, nats_url, "tests.support.apps:asgi_app", service, "--default-deadline", "1"
    )
    try:
        hang = goshaped.request(b"GET", b"localhost:8080", b"/slow?seconds=60")
        started = time.monotonic()
        reply = await go_gateway_request(nc, service, hang, timeout=20)
        assert time.monotonic() - started < 15  # the default deadline, not the app's 60 s
        assert not reply.headers  # nothing a Go gateway would not read
        response = bhttp.decode_response(reply.data)
        assert response.status == 504
        assert response.content == b"Request deadline exceeded\n"
        # A narun gateway's request keeps the ADR-32 answer (and its own deadline).
        narun = await nc.request(
            service,
            hang,
            timeout=20,
            headers={**GO_HEADERS, "Narun-Timeout-Ms": "500", "Narun-Request-Id": "r-1"},
        )
        assert narun.headers is not None
        assert narun.headers["Nats-Service-Error-Code"] == "504"
        assert narun.data == b""
    finally:
        assert consumer.stop() == 0


async def test_go_request_refused_by_a_full_instance_gets_binary_http_503(
    logs: Path, nats_url: str, nc: Client
) -> None:
    service = unique_service("go-overload")
    consumer = start_consumer(
        logs,
        nats_url,
        "tests.support.apps:asgi_app",
        service,
        *("--concurrency", "1", "--backlog", "0"),
    )
    try:
        busy = asyncio.ensure_future(
            go_gateway_request(
                nc, service, goshaped.request(b"GET", b"h", b"/slow?seconds=3"), timeout=20
            )
        )
        await asyncio.sleep(0.5)  # the only slot is taken
        ping = goshaped.request(b"GET", b"h", b"/status/200")
        refused = await go_gateway_request(nc, service, ping)
        assert not refused.headers
        response = bhttp.decode_response(refused.data)
        assert response.status == 503
        assert (b"retry-after", b"1") in response.headers
        # A narun gateway's request is refused the ADR-32 way, marked for a retry.
        narun = await nc.request(
            service, ping, timeout=10, headers={**GO_HEADERS, "Narun-Request-Id": "r-2"}
        )
        assert narun.headers is not None
        assert narun.headers["Nats-Service-Error-Code"] == "503"
        assert narun.headers["Narun-Overloaded"] == "1"
        assert bhttp.decode_response((await busy).data).content == b"slept"
    finally:
        assert consumer.stop() == 0


# --- item 5: what a Go consumer's decoder refuses ---------------------------------------


async def test_gateway_answers_what_a_go_consumer_would_refuse(
    logs: Path, nats_url: str, nc: Client
) -> None:
    """414 / 400 from the gateway, where a Go consumer's refusal would have been a 502."""
    seen: list[int] = []

    async def go_consumer(msg: Msg) -> None:
        seen.append(len(msg.data))
        request = bhttp.decode_request(msg.data)
        if len(request.path) > 4096 or " " in request.authority:  # as Go's decoder does
            headers = {"Nats-Service-Error-Code": "400", "Nats-Service-Error": "Failed to decode"}
            await nc.publish(msg.reply, b"", headers=headers)
        else:
            await msg.respond(goshaped.response(200, [(b"content-type", b"text/plain")], b"ok"))

    service = unique_service("go-limits")
    await nc.subscribe(service, queue="q", cb=go_consumer)
    await nc.flush()
    route = {"path": "/", "methods": ["GET"], "service": service}
    strict, strict_url = start_gateway(logs, nats_url, [route])
    lax, lax_url = start_gateway(logs, nats_url, [route], go_peer_limits=False)
    long_path = "/" + "a" * 4096  # 4097 bytes
    try:
        async with httpx.AsyncClient(base_url=strict_url, timeout=10) as client:
            assert (await client.get("/" + "a" * 4095)).status_code == 200  # 4096: fine
            response = await client.get(long_path)
            assert response.status_code == 414
            assert response.text == "URI too long\n"
            response = await client.get("/", headers={"Host": "bad host"})
            assert response.status_code == 400
            assert response.text == "Bad request\n"
        assert len(seen) == 1  # the refused requests never reached NATS
        # Where every consumer is narun's, the limits can be lifted.
        async with httpx.AsyncClient(base_url=lax_url, timeout=10) as client:
            assert (await client.get(long_path)).status_code == 502  # what Go then answers
    finally:
        assert strict.stop() == 0, strict.output()
        assert lax.stop() == 0, lax.output()
