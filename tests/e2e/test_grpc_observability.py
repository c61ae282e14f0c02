"""gRPC request IDs, access logs, consumer metrics and the standard health service.

grpcio client -> gateway process -> nats-server -> ``narun serve --interface grpc``.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import Proc, Processes, free_port, start_gateway, unique_service
from tests.support import wait_for_port as wait_port

PROBES = ["narun.test.AsyncProbe", "narun.test.SyncProbe"]
HEX16 = re.compile(r"[0-9a-f]{16}")
CHECK = "/grpc.health.v1.Health/Check"


@dataclass
class Stack:
    service: str
    gateway: Proc
    consumer: Proc
    ops: str
    consumer_ops: str
    channel: grpc.Channel


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    service = unique_service("grpc-obs")
    consumer_port, grpc_port, ops_port = free_port(), free_port(), free_port()
    with Processes(logs, nats_url) as procs:
        consumer = procs.consumer(
            "tests.support.grpc_apps:register",
            service,
            "--interface",
            "grpc",
            "--metrics-addr",
            f"127.0.0.1:{consumer_port}",
        )
        gateway, _ = procs.gateway(
            [{"grpc": probe, "service": service} for probe in PROBES],
            grpc_addr=f"127.0.0.1:{grpc_port}",
            metrics_addr=f"127.0.0.1:{ops_port}",
        )
        wait_port(grpc_port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield Stack(
                service,
                gateway,
                consumer,
                f"http://127.0.0.1:{ops_port}",
                f"http://127.0.0.1:{consumer_port}",
                channel,
            )


def call(
    stack: Stack, method: str, request: bytes = b"", metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[bytes, grpc.Call]:
    stub = stack.channel.unary_unary(method, None, None)
    response, outcome = stub.with_call(request, timeout=10, metadata=metadata)
    return response, outcome


def returned_id(outcome: grpc.Call) -> str:
    ids = [v for k, v in outcome.initial_metadata() if k == "x-request-id"]
    assert len(ids) == 1, ids
    assert isinstance(ids[0], str)
    return ids[0]


def seen_ids(response: bytes) -> list[str]:
    return [v for k, v in json.loads(response) if k == "x-request-id"]


def wait_for_line(proc: Proc, pattern: str, timeout: float = 5) -> str:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in proc.output().splitlines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line matches {pattern!r}:\n{proc.output()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.parametrize("probe", PROBES)
def test_request_id_is_made_seen_by_the_servicer_and_returned(stack: Stack, probe: str) -> None:
    response, outcome = call(stack, f"/{probe}/Metadata")
    rid = returned_id(outcome)
    assert HEX16.fullmatch(rid)
    assert seen_ids(response) == [rid]


@pytest.mark.parametrize(
    ("sent", "kept"), [("grpc-client-7", True), ("x" * 201, False), ("", False)]
)
def test_client_request_id_is_kept_when_well_formed(stack: Stack, sent: str, kept: bool) -> None:
    response, outcome = call(
        stack, "/narun.test.AsyncProbe/Metadata", metadata=(("x-request-id", sent),)
    )
    rid = returned_id(outcome)
    assert (rid == sent) is kept
    if not kept:
        assert HEX16.fullmatch(rid)
    assert seen_ids(response) == [rid]


def test_access_lines_name_method_code_and_request(stack: Stack) -> None:
    call(stack, "/narun.test.SyncProbe/Echo", b"hi", metadata=(("x-request-id", "grpc-log-1"),))
    line = wait_for_line(stack.gateway, r"\[req=grpc-log-1\]")
    assert re.search(
        rf" narun\.access: gRPC /narun\.test\.SyncProbe/Echo -> {stack.service} OK "
        r"\d+\.\d{3}ms client=127\.0\.0\.1:\d+ \[req=grpc-log-1\]$",
        line,
    ), line
    line = wait_for_line(stack.consumer, r"\[req=grpc-log-1\]")
    assert re.search(
        r" narun\.access: gRPC /narun\.test\.SyncProbe/Echo OK \d+\.\d{3}ms \[req=grpc-log-1\]$",
        line,
    ), line


def test_consumer_metrics_count_by_code_name(stack: Stack) -> None:
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            call(stack, "/narun.test.SyncProbe/Abort", b"NOT_FOUND:gone")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    lines = httpx.get(stack.consumer_ops + "/metrics").text.splitlines()
    labels = f'app="{stack.service}",status="NOT_FOUND",stream="grpc"'
    assert f"narun_request_processing_seconds_count{{{labels}}} 2.0" in lines
    assert f'narun_worker_active_count{{app="{stack.service}",stream="grpc"}} 0.0' in lines
    gateway = httpx.get(stack.ops + "/metrics").text.splitlines()
    assert 'narun_gateway_in_flight_requests{protocol="grpc"} 0.0' in gateway
    assert httpx.get(stack.consumer_ops + "/readyz").status_code == 200


@pytest.mark.parametrize("service", [b"", b"narun.test.AsyncProbe"])
def test_health_check_serving(stack: Stack, service: bytes) -> None:
    request = b"\x0a" + bytes([len(service)]) + service if service else b""
    response, _ = call(stack, CHECK, request)
    assert response == b"\x08\x01"  # status: SERVING


def test_health_check_of_an_unknown_service(stack: Stack) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(stack, CHECK, b"\x0a\x0bno.Such.Svc")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_of_the_gateway(stack: Stack) -> None:
    stub = health_pb2_grpc.HealthStub(stack.channel)
    watch: Any = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    unknown: Any = stub.Watch(health_pb2.HealthCheckRequest(service="no.Such.Svc"), timeout=10)
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    watch.cancel()
    unknown.cancel()


def test_ipv6_client_is_logged_and_seen_with_plain_brackets(
    stack: Stack, nats_url: str, logs: Path
) -> None:
    """grpcio writes an IPv6 peer as ``ipv6:%5B::1%5D:port``; logs and servicers get it right."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    grpc_port = free_port()
    gateway, _ = start_gateway(
        logs,
        nats_url,
        [{"grpc": PROBES[0], "service": stack.service}],
        grpc_addr=f"[::1]:{grpc_port}",
    )
    try:
        with grpc.insecure_channel(f"[::1]:{grpc_port}") as channel:
            stub = channel.unary_unary(f"/{PROBES[0]}/Echo", None, None)
            _, outcome = stub.with_call(
                b"hi", timeout=10, metadata=(("x-request-id", "grpc-v6-1"),)
            )
        line = wait_for_line(gateway, r"\[req=grpc-v6-1\]")
        assert re.search(r" client=\[::1\]:\d+ \[req=grpc-v6-1\]$", line), line
        peers = [v for k, v in outcome.trailing_metadata() if k == "peer"]
        # The servicer's context.peer() reads as a grpcio server's would.
        assert len(peers) == 1, peers
        assert re.fullmatch(r"ipv6:%5B::1%5D:\d+", str(peers[0])), peers
    finally:
        assert gateway.stop() == 0, gateway.output()
