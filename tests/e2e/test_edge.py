"""Edge safety end to end: forwarded headers, trusted proxies, header and body caps.

httpx (from 127.0.0.1, a trusted proxy, or 127.0.0.2, a nobody) -> real gateway -> NATS
-> real consumer, whose echo app reports the client, scheme and headers it saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import start_consumer, start_gateway, unique_service

SPOOF = {
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "shop.example",
    "x-real-ip": "203.0.113.7",
    "forwarded": "for=203.0.113.7;proto=https",
}


@dataclass
class Gateway:
    url: str
    port: int


@pytest.fixture(scope="module")
def gateway(nats_url: str, logs: Path) -> Iterator[Gateway]:
    service = unique_service("edge")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    proc, url = start_gateway(
        logs,
        nats_url,
        [
            {"path": "/echo/", "methods": ["GET", "POST"], "service": service},
            {"path": "/raw", "methods": ["POST"], "service": service},
        ],
        trusted_proxies=["127.0.0.1"],
        max_header_bytes=4096,
        max_body_bytes=1000,
    )
    yield Gateway(url, int(url.rsplit(":", 1)[1]))
    assert proc.stop() == 0, proc.output()
    assert consumer.stop() == 0, consumer.output()


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10)


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client on 127.0.0.1: a trusted proxy in this gateway's config."""
    async with client_from("127.0.0.1", gateway.url) as c:
        yield c


@pytest.fixture
async def stranger(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client on 127.0.0.2: not trusted."""
    async with client_from("127.0.0.2", gateway.url) as c:
        yield c


def echo(response: httpx.Response) -> tuple[dict[str, Any], dict[str, list[str]]]:
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    headers: dict[str, list[str]] = {}
    for name, value in doc["headers"]:
        headers.setdefault(name, []).append(value)
    return doc, headers


async def test_trusted_proxy_passes_the_client_scheme_and_host(proxy: httpx.AsyncClient) -> None:
    doc, headers = echo(await proxy.get("/echo/t", headers=SPOOF))
    assert doc["client"] == "203.0.113.7"
    assert doc["scheme"] == "https"
    assert headers["host"] == ["shop.example"]
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["https"]
    assert headers["x-forwarded-host"] == ["shop.example"]
    assert headers["forwarded"] == ["for=203.0.113.7;proto=https"]


async def test_untrusted_peer_cannot_spoof(stranger: httpx.AsyncClient, gateway: Gateway) -> None:
    doc, headers = echo(await stranger.get("/echo/s", headers=SPOOF))
    assert doc["client"] == "127.0.0.2"
    assert doc["scheme"] == "http"
    assert headers["host"] == [f"127.0.0.1:{gateway.port}"]
    assert headers["x-forwarded-for"] == ["127.0.0.2"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [f"127.0.0.1:{gateway.port}"]
    assert "x-real-ip" not in headers
    assert "forwarded" not in headers


async def test_fields_named_in_connection_are_not_forwarded(stranger: httpx.AsyncClient) -> None:
    _, headers = echo(
        await stranger.get(
            "/echo/c", headers={"connection": "keep-alive, x-hop", "x-hop": "1", "x-end": "2"}
        )
    )
    assert "x-hop" not in headers
    assert headers["x-end"] == ["2"]


async def test_headers_over_max_header_bytes_get_431(stranger: httpx.AsyncClient) -> None:
    response = await stranger.get("/echo/big", headers={"x-big": "a" * 5000})
    assert response.status_code == 431
    assert response.text == "Request header fields too large\n"
    # Below the cap the same route works.
    assert (await stranger.get("/echo/big", headers={"x-big": "a" * 3000})).status_code == 200


async def test_body_over_max_body_bytes_gets_413(stranger: httpx.AsyncClient) -> None:
    assert (await stranger.post("/raw", content=b"x" * 1000)).content == b"x" * 1000
    response = await stranger.post("/raw", content=b"x" * 1001)
    assert response.status_code == 413

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 400

    response = await stranger.post("/raw", content=parts())
    assert response.status_code == 413
    assert response.text == "Request too large\n"
