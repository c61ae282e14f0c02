"""Behavioural suite of the HTTP path, run over the ASGI and the WSGI adapter.

httpx -> real gateway process -> real nats-server -> real consumer process -> app.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Proc, Processes, start_consumer, start_gateway, unique_service
from tests.support.apps import ALL, SECRET

APPS = {"asgi": "tests.support.apps:asgi_app", "wsgi": "tests.support.apps:wsgi_app"}


@dataclass
class Stack:
    kind: str
    app_ref: str
    service: str
    url: str
    nats_url: str
    gateway: Proc
    consumer: Proc


def routes_for(service: str, nobody: str) -> list[dict[str, Any]]:
    return [
        {"path": "/echo/", "methods": ALL, "service": service},
        {"path": "/raw", "methods": ALL, "service": service},
        {"path": "/cookies", "methods": ["GET"], "service": service},
        {"path": "/status/", "methods": ALL, "service": service},
        {"path": "/slow", "methods": ["GET"], "service": service, "timeout": 1},
        {"path": "/boom", "methods": ALL, "service": service},
        {"path": "/big", "methods": ["GET"], "service": service},
        {"path": "/only-get", "methods": ["GET"], "service": service},
        {"path": "/nobody/", "methods": ["GET"], "service": nobody},
    ]


@pytest.fixture(scope="module", params=sorted(APPS))
def stack(request: pytest.FixtureRequest, nats_url: str, logs: Path) -> Iterator[Stack]:
    kind: str = request.param
    service = unique_service(kind)
    with Processes(logs, nats_url) as procs:
        consumer = procs.consumer(APPS[kind], service)
        gateway, url = procs.gateway(routes_for(service, unique_service("nobody")))
        yield Stack(kind, APPS[kind], service, url, nats_url, gateway, consumer)


@pytest.fixture
async def client(stack: Stack) -> Any:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
        yield c


def echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_methods_reach_the_app(client: httpx.AsyncClient, method: str) -> None:
    doc = echo(await client.request(method, "/echo/m"))
    assert doc["method"] == method
    assert doc["path"] == "/echo/m"


async def test_query_string_with_repeated_keys_and_utf8(client: httpx.AsyncClient) -> None:
    doc = echo(await client.get("/echo/q?a=1&a=2&b=%C3%A9t%C3%A9&c="))
    assert doc["query"] == "a=1&a=2&b=%C3%A9t%C3%A9&c="
    assert doc["args"] == [["a", "1"], ["a", "2"], ["b", "été"], ["c", ""]]


async def test_utf8_percent_encoded_path(client: httpx.AsyncClient) -> None:
    doc = echo(await client.get("/echo/caf%C3%A9/x%20y"))
    assert doc["path"] == "/echo/café/x y"


async def test_request_headers_arrive_with_repeats(client: httpx.AsyncClient, stack: Stack) -> None:
    headers = [("x-custom", "v1"), ("x-multi", "one"), ("x-multi", "two")]
    doc = echo(await client.get("/echo/h", headers=headers))
    got = {k: v for k, v in doc["headers"] if k != "x-multi"}
    assert got["x-custom"] == "v1"
    assert got["host"].startswith("127.0.0.1:")
    multi = [part.strip() for k, v in doc["headers"] if k == "x-multi" for part in v.split(",")]
    assert multi == ["one", "two"]  # ASGI sees two fields, WSGI one joined field (CGI rules)
    assert "connection" not in got  # hop-by-hop fields are not forwarded


async def test_client_address_and_scheme_reach_the_app(client: httpx.AsyncClient) -> None:
    doc = echo(await client.get("/echo/c"))
    assert doc["client"] == "127.0.0.1"
    assert doc["scheme"] == "http"


async def test_repeated_set_cookie_in_response(client: httpx.AsyncClient) -> None:
    response = await client.get("/cookies")
    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    assert [c.split(";")[0] for c in cookies] == ["a=1", "b=2"]


async def test_binary_body_round_trip(client: httpx.AsyncClient) -> None:
    body = bytes(range(256)) * 300
    response = await client.post("/raw", content=body)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/octet-stream"


async def test_empty_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/raw", content=b"")
    assert response.status_code == 200
    assert response.content == b""
    doc = echo(await client.post("/echo/e", content=b""))
    assert base64.b64decode(doc["body_b64"]) == b""


async def test_chunked_request_body(client: httpx.AsyncClient) -> None:
    async def parts() -> Any:
        for i in range(5):
            yield bytes([i]) * 1000

    response = await client.post("/raw", content=parts())
    assert response.status_code == 200
    assert response.content == b"".join(bytes([i]) * 1000 for i in range(5))


async def test_head_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/echo/head")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


@pytest.mark.parametrize("code", [204, 304])
async def test_bodyless_statuses(client: httpx.AsyncClient, code: int) -> None:
    response = await client.get(f"/status/{code}")
    assert response.status_code == code
    assert response.content == b""


@pytest.mark.parametrize("code", [200, 201, 400, 404, 418, 500, 503])
async def test_status_codes_pass_through(client: httpx.AsyncClient, code: int) -> None:
    response = await client.post(f"/status/{code}")
    assert response.status_code == code
    assert response.text == f"status {code}"


async def test_unrouted_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/not-routed")
    assert response.status_code == 404


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/only-get")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_prefix_without_slash_redirects(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo?x=1")
    assert response.status_code == 301
    assert response.headers["location"] == "/echo/?x=1"


async def test_timeout_is_504_within_the_route_timeout(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.get("/slow?seconds=3")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert 0.9 < elapsed < 2.0  # route timeout is 1 s; the app would take 3 s


async def test_no_consumer_is_503_fast(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.get("/nobody/x")
    assert response.status_code == 503
    assert time.monotonic() - started < 1.0


async def test_app_exception_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.post("/boom", content=b"x")
    assert response.status_code == 500
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


async def test_body_over_max_payload_is_streamed(client: httpx.AsyncClient) -> None:
    # A narun consumer takes streams: what does not fit in one message still arrives
    # (the single-message limits, 413 and 502, stay for Go peers: tests/e2e/test_streams.py).
    body = bytes(range(256)) * 4097  # just over 1 MiB
    response = await client.post("/raw", content=body)
    assert response.status_code == 200
    assert response.content == body


async def test_chunked_body_over_max_payload_is_streamed(client: httpx.AsyncClient) -> None:
    async def parts() -> Any:
        for i in range(20):
            yield bytes([i]) * 65536

    response = await client.post("/raw", content=parts())
    assert response.status_code == 200
    assert response.content == b"".join(bytes([i]) * 65536 for i in range(20))


async def test_reply_over_max_payload_is_streamed(client: httpx.AsyncClient) -> None:
    response = await client.get("/big?size=2000000")
    assert response.status_code == 200
    assert response.content == b"x" * 2000000
    assert (await client.get("/big?size=10")).content == b"x" * 10


async def test_fifty_slow_requests_run_concurrently(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get("/slow?seconds=0.5") for _ in range(50)))
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 50
    assert all(r.text == "slept" for r in responses)
    assert elapsed < 5.0  # one at a time would take 25 s


async def test_two_instances_both_receive_traffic(stack: Stack, logs: Path) -> None:
    with Processes(logs, stack.nats_url) as procs:
        procs.consumer(stack.app_ref, stack.service, instances_before=1)
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
            pids = set()
            for _ in range(60):
                response = await c.get("/echo/lb")
                assert response.status_code == 200
                pids.add(response.headers["x-pid"])
        assert len(pids) == 2


async def test_consumer_sigterm_finishes_in_flight_request(
    stack: Stack, logs: Path, nats_url: str
) -> None:
    service = unique_service("drain")
    consumer = start_consumer(logs, nats_url, stack.app_ref, service)
    gateway, url = start_gateway(
        logs, nats_url, [{"path": "/slow", "methods": ["GET"], "service": service}]
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            pending = asyncio.create_task(c.get("/slow?seconds=1.5"))
            await asyncio.sleep(0.5)
            consumer.signal(signal.SIGTERM)
            response = await pending
        assert response.status_code == 200
        assert response.text == "slept"
        assert consumer.wait() == 0
    finally:
        consumer.stop()
        assert gateway.stop() == 0
