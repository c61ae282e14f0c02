"""A gRPC stream whose peer dies: consumer SIGKILL -> the client gets a status; gateway
SIGKILL -> the servicer is cancelled. Both within a few idle timeouts, never a hang."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import Proc, Processes, free_port, unique_service, wait_for_port

IDLE = 1.5  # the stream idle timeout, seconds
APP = "tests.support.grpc_apps:register"
PROBE = "narun.test.AsyncProbe"


@contextlib.contextmanager
def _stack(logs: Path, nats_url: str, name: str) -> Iterator[tuple[Proc, Proc, int]]:
    """A gRPC consumer and a gateway in front of it (its gRPC port last); both stopped at
    the end, however the block ends (one of them is killed on purpose)."""
    service = unique_service(name)
    port = free_port()
    with Processes(logs, nats_url, check=False) as procs:
        consumer = procs.consumer(APP, service, "--interface", "grpc")
        gateway, _ = procs.gateway(
            [{"grpc": PROBE, "service": service}],
            grpc_addr=f"127.0.0.1:{port}",
            stream_idle_timeout_seconds=IDLE,
        )
        wait_for_port(port, gateway)
        yield consumer, gateway, port


def test_consumer_sigkill_mid_stream_ends_the_call(logs: Path, nats_url: str) -> None:
    with _stack(logs, nats_url, "grpc-kill") as (consumer, gateway, port):
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
        assert gateway.stop() == 0, gateway.output()


def test_gateway_sigkill_mid_stream_cancels_the_servicer(
    logs: Path, nats_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    with _stack(logs, nats_url, "grpc-gwkill") as (consumer, gateway, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(f"/{PROBE}/Forever", None, None)
            stream: Any = call(str(report).encode(), timeout=60)
            assert next(stream) == b"started"
            gateway.signal(signal.SIGKILL)
            deadline = time.monotonic() + 4 * IDLE + 5
            while not report.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert report.read_text() == "cancelled seen=True"
        assert consumer.stop() == 0, consumer.output()
