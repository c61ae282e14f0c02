"""``grpc.health.v1.Health/Watch`` through the gateway to the standard (sync) health servicer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import Processes, free_port, unique_service, wait_for_port
from tests.support.grpc_health_app import WATCHED

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def channel(nats_url: str, logs: Path) -> Iterator[grpc.Channel]:
    service = unique_service("health")
    grpc_port = free_port()
    with Processes(logs, nats_url) as procs:
        procs.consumer("tests.support.grpc_health_app:register", service, "--interface", "grpc")
        gateway, _ = procs.gateway(
            [
                {"grpc": "grpc.health.v1.Health", "service": service},
                {"grpc": "narun.test.HealthControl", "service": service},
            ],
            grpc_addr=f"127.0.0.1:{grpc_port}",
        )
        wait_for_port(grpc_port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield channel


def test_watch_sees_the_servicer_status_change(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    watch: Any = stub.Watch(health_pb2.HealthCheckRequest(service=WATCHED), timeout=30)
    assert next(watch).status == SERVING
    set_status = channel.unary_unary("/narun.test.HealthControl/Set", None, None)
    started = time.monotonic()
    assert set_status(f"{WATCHED}:{NOT_SERVING}".encode(), timeout=10) == b"ok"
    assert next(watch).status == NOT_SERVING
    assert time.monotonic() - started < 5
    watch.cancel()
    # The servicer let go of the cancelled watch: the next one is answered as usual.
    again: Any = stub.Watch(health_pb2.HealthCheckRequest(service=WATCHED), timeout=30)
    assert next(again).status == NOT_SERVING
    again.cancel()


def test_check_through_the_gateway(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == SERVING
