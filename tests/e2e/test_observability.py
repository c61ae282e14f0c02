"""Request IDs, access logs and metrics of real gateway and consumer processes (HTTP).

httpx -> gateway process -> nats-server -> consumer processes (ASGI, WSGI) -> app; the
logs are read from the processes' log files, the metrics from their ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from narun.protocol import wire
from narun.protocol.bhttp import Request, decode_response, encode_request
from tests.support import (
    Proc,
    Processes,
    free_port,
    start_gateway,
    unique_service,
    wait_for_port,
)
from tests.support.apps import ALL

HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass
class Stack:
    url: str
    ops: str
    """The gateway's metrics listener."""
    gateway: Proc
    service: str
    consumer: Proc
    counted: str
    """The service behind ``/status/``, used by the metrics test alone."""
    counted_ops: str
    """Its consumer's ``--metrics-addr`` listener."""
    wsgi: str
    """A WSGI consumer's service (no route: reached over NATS directly)."""


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    service, counted, wsgi = (unique_service(p) for p in ("obs", "counted", "obs-wsgi"))
    counted_port, ops_port = free_port(), free_port()
    routes = [
        {"path": "/echo/", "methods": ALL, "service": service},
        {"path": "/slow", "methods": ["GET"], "service": service},
        {"path": "/boom", "methods": ["GET"], "service": service},
        {"path": "/status/", "methods": ALL, "service": counted},
        {"path": "/nobody/", "methods": ["GET"], "service": unique_service("nobody")},
    ]
    with Processes(logs, nats_url) as procs:
        consumer = procs.consumer("tests.support.apps:asgi_app", service)
        procs.consumer(
            "tests.support.apps:asgi_app", counted, "--metrics-addr", f"127.0.0.1:{counted_port}"
        )
        procs.consumer("tests.support.apps:wsgi_app", wsgi)
        gateway, url = procs.gateway(routes, metrics_addr=f"127.0.0.1:{ops_port}", retry_seconds=0)
        wait_for_port(ops_port, gateway)
        yield Stack(
            url,
            f"http://127.0.0.1:{ops_port}",
            gateway,
            service,
            consumer,
            counted,
            f"http://127.0.0.1:{counted_port}",
            wsgi,
        )


def app_ids(response: httpx.Response) -> list[str]:
    """The x-request-id fields the app saw (the echo app answers its headers)."""
    assert response.status_code == 200, response.text
    return [v for k, v in response.json()["headers"] if k == "x-request-id"]


def wait_for_line(proc: Proc, pattern: str, timeout: float = 5) -> str:
    """The first line of ``proc``'s log matching ``pattern`` (a regex), waiting for it."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in proc.output().splitlines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line matches {pattern!r}:\n{proc.output()[-3000:]}")
        time.sleep(0.05)


def scrape(url: str) -> list[str]:
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    return response.text.splitlines()


# -- request IDs ----------------------------------------------------------------------


def test_request_id_is_made_when_the_client_sends_none(stack: Stack) -> None:
    response = httpx.get(stack.url + "/echo/new")
    rid = response.headers["x-request-id"]
    assert HEX16.fullmatch(rid)
    assert app_ids(response) == [rid]
    assert HEX16.fullmatch(httpx.get(stack.url + "/nothing").headers["x-request-id"])


def test_well_formed_request_id_is_kept(stack: Stack) -> None:
    rid = "client-chosen id/42"
    response = httpx.get(stack.url + "/echo/kept", headers={"X-Request-ID": rid})
    assert response.headers.get_list("x-request-id") == [rid]
    assert app_ids(response) == [rid]


@pytest.mark.parametrize("bad", ["x" * 201, "tab\there", "caf\u00e9"])
def test_malformed_request_id_is_replaced(stack: Stack, bad: str) -> None:
    response = httpx.get(stack.url + "/echo/bad", headers=[(b"x-request-id", bad.encode())])
    rid = response.headers["x-request-id"]
    assert HEX16.fullmatch(rid)
    assert app_ids(response) == [rid]  # the malformed one never reaches the app


def test_answers_of_the_gateway_itself_carry_the_id(stack: Stack) -> None:
    for path, status in (("/nothing", 404), ("/slow", 405)):
        response = httpx.post(stack.url + path, headers={"x-request-id": "own-answer"})
        assert response.status_code == status
        assert response.headers["x-request-id"] == "own-answer"
    # refused at the edge, before routing: header fields over max_header_bytes
    big = {"x-request-id": "edge-refusal", "x-big": "b" * 70_000}
    response = httpx.get(stack.url + "/echo/big", headers=big)
    assert response.status_code == 431
    assert response.headers["x-request-id"] == "edge-refusal"
    wait_for_line(stack.gateway, r"narun\.access: GET <unmatched> -> - 431 .*\[req=edge-refusal\]$")


async def test_consumer_takes_the_id_from_the_control_header(stack: Stack, nats_url: str) -> None:
    """A request straight over NATS (as any gateway may send): ASGI and WSGI apps see it."""
    nc = await nats.connect(nats_url)
    try:
        for service in (stack.service, stack.wsgi):
            payload = encode_request(
                Request(method="GET", scheme="http", authority="h", path="/echo/nats")
            )
            headers = {wire.CONTENT_TYPE: wire.BHTTP_CONTENT_TYPE, wire.REQUEST_ID: "via-nats-1"}
            reply = await nc.request(service, payload, timeout=5, headers=headers)
            doc: dict[str, Any] = json.loads(decode_response(reply.data).content)
            assert ["x-request-id", "via-nats-1"] in doc["headers"], service
    finally:
        await nc.close()


# -- logs -----------------------------------------------------------------------------


def test_access_lines_of_gateway_and_consumer(stack: Stack) -> None:
    rid = "log-me-7"
    response = httpx.post(stack.url + "/echo/logged?secret=1", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    gateway_line = wait_for_line(stack.gateway, rf"\[req={rid}\]")
    assert re.search(
        rf" gateway INFO narun\.access: POST /echo/ -> {stack.service} 200 \d+\.\d{{3}}ms "
        rf"client=127\.0\.0\.1:\d+ \[req={rid}\]$",
        gateway_line,
    ), gateway_line
    consumer_line = wait_for_line(stack.consumer, rf"\[req={rid}\]")
    assert re.search(
        rf" INFO narun\.access: POST /echo/logged 200 \d+\.\d{{3}}ms \[req={rid}\]$",
        consumer_line,
    ), consumer_line


def test_other_log_lines_about_a_request_name_it(stack: Stack) -> None:
    response = httpx.get(stack.url + "/nobody/", headers={"X-Request-ID": "warn-me-3"})
    assert response.status_code == 503
    wait_for_line(
        stack.gateway, r" WARNING narun\.gateway\.http: GET /nobody/ -> .*\[req=warn-me-3\]$"
    )
    response = httpx.get(stack.url + "/boom", headers={"X-Request-ID": "boom-me-4"})
    assert response.status_code == 500
    wait_for_line(
        stack.consumer, r" ERROR narun\.consumer\.http\.asgi: ASGI app raised .*\[req=boom-me-4\]$"
    )


# -- metrics --------------------------------------------------------------------------


async def test_metrics_count_known_traffic(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        for _ in range(3):
            assert (await client.post("/status/200")).status_code == 200
        # 1,000 distinct URLs under one prefix route: one series (path = route pattern)
        semaphore = asyncio.Semaphore(32)

        async def one(i: int) -> int:
            async with semaphore:
                return (await client.get(f"/status/x{i}")).status_code

        statuses = await asyncio.gather(*(one(i) for i in range(1000)))
    assert set(statuses) == {404}  # the app's own 404 for a non-integer code
    lines = scrape(stack.ops)
    counter = "http_gateway_requests_total"
    assert f'{counter}{{method="POST",path="/status/",status_code="200"}} 3.0' in lines
    assert f'{counter}{{method="GET",path="/status/",status_code="404"}} 1000.0' in lines
    assert [line for line in lines if line.startswith(counter) and "/status/x" in line] == []
    assert f'gateway_nats_requests_total{{status="success",subject="{stack.counted}"}} 1003.0' in (
        lines
    )
    assert 'narun_gateway_in_flight_requests{protocol="http"} 0.0' in lines
    consumer = scrape(stack.counted_ops)
    count = "narun_request_processing_seconds_count"
    labels = f'app="{stack.counted}"'
    assert f'{count}{{{labels},status="200",stream="default"}} 3.0' in consumer
    assert f'{count}{{{labels},status="404",stream="default"}} 1000.0' in consumer
    assert f'narun_worker_active_count{{{labels},stream="default"}} 0.0' in consumer
    async with httpx.AsyncClient(base_url=stack.counted_ops) as ops:
        for path in ("/healthz", "/readyz"):
            answer = await ops.get(path)
            assert (answer.status_code, answer.text) == (200, "ok\n")


async def test_in_flight_gauge_follows_a_slow_request(stack: Stack) -> None:
    gauge = 'narun_gateway_in_flight_requests{protocol="http"}'
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        slow = asyncio.create_task(client.get("/slow?seconds=1"))
        deadline = time.monotonic() + 5
        seen = ""
        while time.monotonic() < deadline and f"{gauge} 1.0" not in seen:
            await asyncio.sleep(0.05)
            seen = (await client.get(stack.ops + "/metrics")).text
        assert f"{gauge} 1.0" in seen.splitlines()
        assert (await slow).status_code == 200
    assert f"{gauge} 0.0" in scrape(stack.ops)


# -- readiness at shutdown ------------------------------------------------------------


async def test_readyz_says_shutting_down_as_soon_as_sigterm_arrives(
    stack: Stack, nats_url: str, logs: Path
) -> None:
    ops_port = free_port()
    gateway, url = start_gateway(
        logs,
        nats_url,
        [{"path": "/slow", "methods": ["GET"], "service": stack.service}],
        metrics_addr=f"127.0.0.1:{ops_port}",
    )
    readyz = f"http://127.0.0.1:{ops_port}/readyz"
    try:
        wait_for_port(ops_port, gateway)
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(readyz)).status_code == 200
            slow = asyncio.create_task(client.get(url + "/slow?seconds=1.5"))
            await asyncio.sleep(0.4)
            gateway.signal(signal.SIGTERM)
            answer = None
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                answer = await client.get(readyz)
                if answer.status_code == 503:
                    break
                await asyncio.sleep(0.02)
            assert answer is not None
            assert (answer.status_code, answer.text) == (503, "shutting down\n")
            assert not slow.done()  # answered while the request was still in flight
            response = await slow
        assert (response.status_code, response.text) == (200, "slept")
        assert gateway.wait() == 0, gateway.output()
    finally:
        gateway.stop()
