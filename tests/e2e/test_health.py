"""The gateway's metrics server: /healthz, /readyz and /metrics of a real gateway process."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from narun.transport.server import NATSServer
from tests.support import (
    Proc,
    Processes,
    free_port,
    start_gateway,
    unique_service,
    wait_for_port,
    write_config,
)


def start_with_ops(logs: Path, nats_url: str, service: str) -> tuple[Proc, str, str]:
    """A gateway with one route to ``service``; its base URL and its ops base URL."""
    port = free_port()
    gateway, url = start_gateway(
        logs,
        nats_url,
        [{"path": "/hello", "methods": ["GET"], "service": service}],
        metrics_addr=f"127.0.0.1:{port}",
    )
    wait_for_port(port, gateway)
    return gateway, url, f"http://127.0.0.1:{port}"


def wait_for_status(url: str, status: int, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[tuple[Proc, str, str]]:
    with Processes(logs, nats_url) as procs:
        gateway, url, ops = start_with_ops(logs, nats_url, unique_service("nobody"))
        procs.add(gateway)
        yield gateway, url, ops


def test_healthz_and_readyz_answer_ok(stack: tuple[Proc, str, str]) -> None:
    _, _, ops = stack
    for path in ("/healthz", "/readyz"):
        response = httpx.get(ops + path)
        assert (response.status_code, response.text) == (200, "ok\n"), path
    assert httpx.get(ops + "/nothing-here").status_code == 404


def test_metrics_count_a_request(stack: tuple[Proc, str, str]) -> None:
    _, url, ops = stack
    assert httpx.get(url + "/hello").status_code == 503  # no consumer: still a request
    response = httpx.get(ops + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    line = 'http_gateway_requests_total{method="GET",path="/hello",status_code="503"} 1.0'
    assert line in response.text.splitlines()


def test_readyz_follows_the_nats_connection(own_nats_server: NATSServer, logs: Path) -> None:
    gateway, _, ops = start_with_ops(logs, own_nats_server.url, unique_service("nobody"))
    try:
        assert httpx.get(ops + "/readyz").status_code == 200
        own_nats_server.stop()
        response = wait_for_status(ops + "/readyz", 503)
        assert response.status_code == 503
        assert "NATS" in response.text
        assert httpx.get(ops + "/healthz").status_code == 200  # alive, just not ready
        own_nats_server.start()  # same port as before
        response = wait_for_status(ops + "/readyz", 200)
        assert (response.status_code, response.text) == (200, "ok\n")
    finally:
        assert gateway.stop() == 0, gateway.output()


def test_busy_metrics_port_fails_the_gateway_clearly(nats_url: str, logs: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            logs,
            {
                "nats_url": nats_url,
                "server_addr": f"127.0.0.1:{free_port()}",
                "metrics_addr": f"127.0.0.1:{port}",
                "routes": [{"path": "/x", "methods": ["GET"], "service": "x"}],
            },
        )
        gateway = Proc(["gateway", "-c", str(config)], logs / f"{config.stem}.log")
        code = gateway.wait(timeout=30)
    assert code == 1
    assert "cannot start the gateway" in gateway.output()
    assert "Traceback" not in gateway.output()
