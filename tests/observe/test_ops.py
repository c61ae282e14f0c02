"""The operations app (/metrics, /healthz, /readyz) and the NATS readiness rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from narun.observe.ops import OpsApp, nats_readiness


class Switch:
    def __init__(self) -> None:
        self.state = (True, "ok")

    def __call__(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
async def client(switch: Switch) -> Any:
    registry = CollectorRegistry()
    Counter("demo_requests", "Demo.", ["path"], registry=registry).labels("/a").inc(3)
    app = OpsApp(registry=registry, is_ready=switch)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as c:
        yield c


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_follows_the_check(client: httpx.AsyncClient, switch: Switch) -> None:
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (200, "ok\n")
    switch.state = (False, "NATS connection lost, reconnecting")
    response = await client.get("/readyz")
    assert (response.status_code, response.text) == (503, "NATS connection lost, reconnecting\n")
    switch.state = (True, "ok")
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_exposes_the_registry(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert 'demo_requests_total{path="/a"} 3.0' in response.text.splitlines()
    assert "cache-control" not in response.headers


async def test_head_has_headers_but_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/metrics")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/", "/metrics/", "/health", "/readyz/x"])
async def test_unknown_paths_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.text == "not found\n"


async def test_lifespan_is_acknowledged() -> None:
    app = OpsApp(registry=CollectorRegistry(), is_ready=Switch())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@dataclass
class FakeNATS:
    is_connected: bool = False
    is_reconnecting: bool = False
    is_draining: bool = False
    is_closed: bool = False


@pytest.mark.parametrize(
    ("nc", "ready", "reason"),
    [
        (None, False, "starting or stopping"),
        (FakeNATS(is_connected=True), True, "ok"),
        (FakeNATS(is_reconnecting=True), False, "NATS connection lost, reconnecting"),
        (FakeNATS(is_draining=True), False, "draining the NATS connection (shutting down)"),
        (FakeNATS(is_closed=True), False, "NATS connection closed"),
        (FakeNATS(), False, "not connected to NATS"),
    ],
)
def test_nats_readiness(nc: FakeNATS | None, ready: bool, reason: str) -> None:
    assert nats_readiness(nc) == (ready, reason)
