"""The embeddable gateway: mounted in FastAPI next to a local route, and served alone.

uvicorn runs in this test's event loop on a free port; the consumer is a real
``narun serve`` process and NATS the session's real nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from narun._types import ASGIApp, Message
from narun.config.gateway import parse_config
from narun.gateway import GatewayApp, create_app
from narun.gateway.server import Gateway
from tests.support import Proc, free_port, start_consumer, unique_service, write_config


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (they belong to pytest here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture(scope="module")
def service(nats_url: str, logs: Path) -> Iterator[str]:
    name = unique_service("embed")
    consumer: Proc = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", name)
    yield name
    assert consumer.stop() == 0, consumer.output()


def gateway_config(nats_url: str, service: str) -> dict[str, Any]:
    return {
        "nats_url": nats_url,
        "metrics_addr": "",
        "request_timeout_seconds": 5,
        "routes": [{"path": "/echo/", "methods": ["GET", "POST"], "service": service}],
    }


def fastapi_with(gateway: GatewayApp) -> FastAPI:
    """The documented pattern: the parent's lifespan enters the gateway's."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with gateway.lifespan():
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "nats": "up" if gateway.connected else "down"}

    app.mount("/api", gateway)
    return app


async def test_mounted_in_fastapi_next_to_a_local_route(nats_url: str, service: str) -> None:
    gateway = create_app(parse_config(gateway_config(nats_url, service), env={}))
    async with served(fastapi_with(gateway)) as url, httpx.AsyncClient(base_url=url) as client:
        local = await client.get("/health")
        assert local.json() == {"status": "ok", "nats": "up"}

        response = await client.post("/api/echo/x?q=1", content=b"hi")
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["path"] == "/echo/x"  # the consumer sees the path below the mount
        assert doc["query"] == "q=1"
        assert doc["method"] == "POST"
        assert doc["client"] == "127.0.0.1"

        # Redirects keep the mount prefix; unrouted paths are the gateway's 404.
        redirect = await client.get("/api/echo?x=1")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "/api/echo/?x=1"
        assert (await client.get("/api/nowhere")).status_code == 404
        # FastAPI's own 404 outside the mount.
        assert (await client.get("/nowhere")).json() == {"detail": "Not Found"}
    assert not gateway.connected  # the parent's shutdown drained the gateway's NATS link


async def test_served_alone_from_a_config_file(nats_url: str, service: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, gateway_config(nats_url, service))
    gateway = create_app(path, env={})
    async with served(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        assert gateway.connected  # uvicorn ran the app's own ASGI lifespan
        doc = (await client.get("/echo/alone")).json()
        assert doc["path"] == "/echo/alone"
    assert not gateway.connected


async def test_mounted_without_lifespan_answers_503_and_says_why(
    nats_url: str, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = create_app(parse_config(gateway_config(nats_url, service), env={}))
    app = FastAPI()
    app.mount("/api", gateway)
    with caplog.at_level(logging.ERROR, logger="narun.gateway.app"):
        async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/api/echo/x")
            await client.get("/api/echo/y")
    assert response.status_code == 503
    assert response.text == "Gateway is not connected to NATS\n"
    assert response.headers["retry-after"] == "1"  # transient, like every other 503
    hints = [r.getMessage() for r in caplog.records if "lifespan" in r.getMessage()]
    assert len(hints) == 1  # logged once, not per request
    assert "gateway_app.lifespan()" in hints[0]


async def test_startup_failure_is_reported_through_the_lifespan() -> None:
    config = gateway_config(f"nats://127.0.0.1:{free_port()}", "x")
    gateway = create_app(parse_config(config, env={}))
    incoming = [{"type": "lifespan.startup"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await gateway({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert sent[0]["message"].startswith("cannot connect to NATS at nats://127.0.0.1:")
    assert not gateway.connected


async def test_the_gateway_http_app_opens_and_drains_nats_through_its_lifespan(
    nats_url: str, service: str
) -> None:
    gateway = Gateway(parse_config(gateway_config(nats_url, service), env={}))
    incoming = [{"type": "lifespan.startup"}]
    sent: list[Message] = []
    answered, started = asyncio.Event(), asyncio.Event()

    async def receive() -> Message:
        if not incoming:
            await started.wait()
            return {"type": "lifespan.shutdown"}
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)
        answered.set()

    lifespan = asyncio.create_task(gateway.http_app({"type": "lifespan"}, receive, send))
    await asyncio.wait_for(answered.wait(), 10)
    assert sent[0]["type"] == "lifespan.startup.complete"
    assert gateway.readiness() == (True, "ok")
    transport = httpx.ASGITransport(app=gateway.http_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/echo/direct")).json()["path"] == "/echo/direct"
    started.set()
    await asyncio.wait_for(lifespan, 10)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert gateway.requester is None  # drained
