"""Full and stuck consumers, safe retries, rolling restarts, consumers that misbehave."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import nats
from nats.aio.msg import Msg

from tests.support import Processes, start_consumer, start_gateway, unique_service
from tests.support.traffic import Traffic, during, steady

APP = "tests.support.apps:asgi_app"


def slow_route(service: str, timeout: float = 5) -> dict[str, object]:
    return {"path": "/slow", "methods": ["GET"], "service": service, "timeout": timeout}


async def test_full_consumer_refuses_quickly_with_503_and_retry_after(
    logs: Path, nats_url: str
) -> None:
    service = unique_service("full")
    with Processes(logs, nats_url) as procs:
        procs.consumer(APP, service, "--concurrency", "2", "--backlog", "2")
        _, url = procs.gateway([slow_route(service)], retry_seconds=0)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def timed() -> tuple[httpx.Response, float]:
                started = time.monotonic()
                response = await client.get("/slow?seconds=1")
                return response, time.monotonic() - started

            results = await asyncio.gather(*(timed() for _ in range(12)))
    statuses = Counter(r.status_code for r, _ in results)
    refused = [(r, t) for r, t in results if r.status_code == 503]
    print(f"full consumer: {dict(statuses)}")
    assert set(statuses) == {200, 503}
    assert statuses[200] >= 4  # two running plus two waiting
    assert all(r.headers["retry-after"] == "1" for r, _ in refused)
    assert all(t < 0.9 for _, t in refused)  # refused at once, not after the work


async def test_overloaded_instance_is_retried_on_another(logs: Path, nats_url: str) -> None:
    service = unique_service("spread")
    args = ("--concurrency", "1", "--backlog", "0")
    with Processes(logs, nats_url) as procs:
        procs.consumer(APP, service, *args)
        procs.consumer(APP, service, *args, instances_before=1)
        _, url = procs.gateway([slow_route(service)], retry_seconds=2)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            responses = await asyncio.gather(*(client.get("/slow?seconds=0.3") for _ in range(2)))
    assert [r.status_code for r in responses] == [200, 200]


async def test_stuck_consumer_times_out_on_time_and_stays_bounded(
    logs: Path, nats_url: str
) -> None:
    service = unique_service("stuck")
    with Processes(logs, nats_url) as procs:
        procs.consumer(APP, service, "--concurrency", "2", "--backlog", "0")
        _, url = procs.gateway([slow_route(service, timeout=2)], retry_seconds=0)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            started = time.monotonic()
            stuck = [asyncio.create_task(client.get("/slow?seconds=30")) for _ in range(2)]
            await asyncio.sleep(0.5)
            # Both slots are held by the stuck calls: more work is refused at once.
            refused = await client.get("/slow?seconds=0")
            refused_after = time.monotonic() - started
            answers = [await t for t in stuck]
            waited = time.monotonic() - started
            # At the deadline the consumer cancelled the stuck calls: slots are free again.
            await asyncio.sleep(0.1)
            after = await client.get("/slow?seconds=0")
    assert refused.status_code == 503
    assert refused_after < 1.0
    assert [r.status_code for r in answers] == [504, 504]
    assert 1.9 < waited < 2.6
    assert after.status_code == 200


async def test_no_responders_is_retried_until_a_consumer_joins(logs: Path, nats_url: str) -> None:
    service = unique_service("late")
    with Processes(logs, nats_url) as procs:
        _, url = procs.gateway(
            [{"path": "/echo/", "methods": ["GET"], "service": service}], retry_seconds=4
        )
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            pending = asyncio.create_task(client.get("/echo/late"))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(procs.consumer, APP, service)
            response = await pending
    assert response.status_code == 200


async def test_rolling_restart_loses_nothing(logs: Path, nats_url: str) -> None:
    service = unique_service("rolling")
    consumers = [
        start_consumer(logs, nats_url, APP, service),
        start_consumer(logs, nats_url, APP, service, instances_before=1),
    ]
    gateway, url = start_gateway(
        logs, nats_url, [{"path": "/echo/", "methods": ["GET"], "service": service}]
    )

    def restart(index: int) -> None:
        old = consumers[index]
        old.signal(signal.SIGTERM)
        assert old.wait() == 0, old.output()
        consumers[index] = start_consumer(logs, nats_url, APP, service, instances_before=1)

    traffic = Traffic()
    try:
        await during(
            steady(url, "/echo/r", seconds=8, rate=40, client_timeout=10, traffic=traffic),
            (1.0, lambda: restart(0)),
            (4.0, lambda: restart(1)),
        )
    finally:
        assert gateway.stop() == 0, gateway.output()
        for proc in consumers:
            assert proc.stop() == 0, proc.output()
    print(traffic.report("rolling restart"))
    assert traffic.sent == 320
    assert traffic.statuses == Counter({200: 320})


async def test_consumer_replying_twice_or_never(logs: Path, nats_url: str) -> None:
    twice, never = unique_service("twice"), unique_service("never")
    nc = await nats.connect(nats_url)

    async def reply_twice(msg: Msg) -> None:
        ok = b"\x01\x40\xc8\x00\x05first\x00"
        await msg.respond(ok)
        await msg.respond(b"\x01\x41\xf4\x00\x06second\x00")

    async def ignore(msg: Msg) -> None:
        return None

    await nc.subscribe(twice, cb=reply_twice)
    await nc.subscribe(never, cb=ignore)
    await nc.flush()
    gateway, url = start_gateway(
        logs,
        nats_url,
        [
            {"path": "/twice", "methods": ["GET"], "service": twice},
            {"path": "/never", "methods": ["GET"], "service": never, "timeout": 0.5},
        ],
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            first = [await client.get("/twice") for _ in range(3)]
            silent = await client.get("/never")
    finally:
        await nc.close()
        assert gateway.stop() == 0, gateway.output()
    assert [(r.status_code, r.text) for r in first] == [(200, "first")] * 3
    assert silent.status_code == 504
