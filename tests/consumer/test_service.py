"""MicroService against a real nats-server: concurrency, limits, stats, drain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.consumer.service import MicroService, Reply, error_reply
from tests.support import unique_service


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


class Slow:
    """A handler that sleeps and records how many calls overlap."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0

    async def __call__(self, msg: Msg) -> Reply:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        if msg.data == b"fail":
            return error_reply(500, "asked to fail")
        return Reply(data=b"done:" + msg.data)


async def test_requests_overlap_up_to_the_limit(nc: Client) -> None:
    handler = Slow(0.2)
    name = unique_service("limit")
    service = MicroService(
        nc, name=name, endpoint="handler", handler=handler, concurrency=3, backlog=6
    )
    await service.start()
    try:
        replies = await asyncio.gather(
            *(nc.request(name, str(i).encode(), timeout=5) for i in range(9))
        )
    finally:
        await service.stop()
    assert sorted(r.data for r in replies) == sorted(f"done:{i}".encode() for i in range(9))
    assert handler.peak == 3


async def test_full_instance_refuses_beyond_its_backlog(nc: Client) -> None:
    handler = Slow(0.3)
    name = unique_service("shed")
    service = MicroService(
        nc, name=name, endpoint="handler", handler=handler, concurrency=2, backlog=1
    )
    await service.start()
    try:
        replies = await asyncio.gather(*(nc.request(name, b"x", timeout=5) for _ in range(8)))
    finally:
        await service.stop()
    done = [r for r in replies if r.data == b"done:x"]
    refused = [r for r in replies if r.headers and r.headers.get("Narun-Overloaded") == "1"]
    assert len(done) + len(refused) == 8
    assert 3 <= len(done) < 8  # two running and at least one waiting; the rest refused
    assert all(r.headers and r.headers["Nats-Service-Error-Code"] == "503" for r in refused)
    assert handler.peak == 2
    assert service.stats().endpoints[0].num_errors == len(refused)


async def test_stats_info_and_ping_documents(nc: Client) -> None:
    name = unique_service("stats")
    service = MicroService(
        nc,
        name=name,
        endpoint="handler",
        handler=Slow(0),
        version="1.2.3",
        description="test service",
        metadata={"team": "core"},
    )
    await service.start()
    try:
        for payload in (b"a", b"fail", b"b"):
            await nc.request(name, payload, timeout=5)
        stats = json.loads((await nc.request(f"$SRV.STATS.{name}", b"", timeout=2)).data)
        info = json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)
        ping = json.loads(
            (await nc.request(f"$SRV.PING.{name}.{service.identity.id}", b"", timeout=2)).data
        )
    finally:
        await service.stop()
    assert stats["type"] == "io.nats.micro.v1.stats_response"
    assert stats["name"] == name
    assert stats["version"] == "1.2.3"
    assert stats["started"].endswith("Z")
    (endpoint,) = stats["endpoints"]
    assert endpoint["name"] == "handler"
    assert endpoint["subject"] == name
    assert endpoint["queue_group"] == "q"
    assert endpoint["num_requests"] == 3
    assert endpoint["num_errors"] == 1
    assert endpoint["last_error"] == "asked to fail"
    assert endpoint["processing_time"] > 0
    assert endpoint["average_processing_time"] == endpoint["processing_time"] // 3
    assert info["description"] == "test service"
    assert info["metadata"] == {"team": "core"}
    assert info["endpoints"] == [
        {"name": "handler", "subject": name, "queue_group": "q", "metadata": None}
    ]
    assert stats == service.stats().as_dict()  # what went out is the service's document
    assert info == service.info().as_dict()
    assert ping == {
        "type": "io.nats.micro.v1.ping_response",
        "name": name,
        "id": service.identity.id,
        "version": "1.2.3",
        "metadata": {"team": "core"},
    }


async def test_handler_exception_is_a_generic_service_error(nc: Client) -> None:
    async def broken(msg: Msg) -> Reply:
        raise KeyError("internal detail")

    name = unique_service("broken")
    service = MicroService(nc, name=name, endpoint="handler", handler=broken)
    await service.start()
    try:
        reply = await nc.request(name, b"x", timeout=5)
    finally:
        await service.stop()
    assert reply.headers == {
        "Nats-Service-Error": "Internal Server Error",
        "Nats-Service-Error-Code": "500",
    }
    assert service.stats().endpoints[0].num_errors == 1


async def test_stop_finishes_in_flight_requests_then_stops_listening(nc: Client) -> None:
    name = unique_service("drain")
    service = MicroService(nc, name=name, endpoint="handler", handler=Slow(0.5))
    await service.start()
    pending = [asyncio.create_task(nc.request(name, b"x", timeout=5)) for _ in range(5)]
    await asyncio.sleep(0.1)
    await service.stop()
    assert [(await p).data for p in pending] == [b"done:x"] * 5
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request(name, b"late", timeout=1)


async def test_reply_over_max_payload_becomes_a_service_error(nc: Client) -> None:
    async def huge(msg: Msg) -> Reply:
        return Reply(data=b"x" * (nc.max_payload + 1))

    name = unique_service("huge")
    service = MicroService(nc, name=name, endpoint="handler", handler=huge)
    await service.start()
    try:
        reply = await nc.request(name, b"", timeout=5)
    finally:
        await service.stop()
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "500"
    assert reply.data == b""
    (endpoint,) = service.stats().endpoints
    assert (endpoint.num_requests, endpoint.num_errors) == (1, 1)
    assert endpoint.last_error == "Reply exceeds NATS max_payload"


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MicroService(None, name="x", endpoint="handler", handler=Slow(0), concurrency=0)  # type: ignore[arg-type]
