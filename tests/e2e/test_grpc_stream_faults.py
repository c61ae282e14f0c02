"""A gRPC stream whose peer dies: consumer SIGKILL -> the client gets a status; gateway
SIGKILL -> the servicer is cancelled. Both within a few idle timeouts, never a hang."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import free_port, start_consumer, start_gateway, unique_service, wait_for_port

IDLE = 1.5  # the stream idle timeout, seconds
APP = "tests.support.grpc_apps:register"
PROBE = "narun.test.AsyncProbe"


def _routes(service: str) -> list[dict[str, Any]]:
    return [{"grpc": PROBE, "service": service}]


def test_consumer_sigkill_mid_stream_ends_the_call(logs: Path, nats_url: str) -> None:
    service = unique_service("grpc-kill")
    port = free_port()
    consumer = start_consumer(logs, nats_url, APP, service, "--interface", "grpc")
    gateway, _ = start_gateway(
        logs,
        nats_url,
        _routes(service),
        grpc_addr=f"127.0.0.1:{port}",
        stream_idle_timeout_seconds=IDLE,
    )
    try:
        wait_for_port(port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(f"/{PROBE}/Forever", None, None)
            stream: Any = call(str(logs / "unused").encode(), timeout=60)
            assert next(stream) == b"started"
            consumer.signal(signal.SIGKILL)
            killed = time.monotonic()
            with pytest.raises(grpc.RpcError):
                next(stream)
            assert stream.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - killed < 4 * IDLE + 2
    finally:
        consumer.stop()
        assert gateway.stop() == 0, gateway.output()


def test_gateway_sigkill_mid_stream_cancels_the_servicer(
    logs: Path, nats_url: str, tmp_path: Path
) -> None:
    service = unique_service("grpc-gwkill")
    port = free_port()
    report = tmp_path / "report"
    consumer = start_consumer(logs, nats_url, APP, service, "--interface", "grpc")
    gateway, _ = start_gateway(
        logs,
        nats_url,
        _routes(service),
        grpc_addr=f"127.0.0.1:{port}",
        stream_idle_timeout_seconds=IDLE,
    )
    try:
        wait_for_port(port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(f"/{PROBE}/Forever", None, None)
            stream: Any = call(str(report).encode(), timeout=60)
            assert next(stream) == b"started"
            gateway.signal(signal.SIGKILL)
            deadline = time.monotonic() + 4 * IDLE + 5
            while not report.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert report.read_text() == "cancelled seen=True"
    finally:
        gateway.stop()
        assert consumer.stop() == 0, consumer.output()
