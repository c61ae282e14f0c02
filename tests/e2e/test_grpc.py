"""gRPC end to end: grpcio client -> gateway process -> nats-server -> consumer process.

One gateway and one consumer (serving ``tests.support.grpc_apps``) per module. A fake Go
narun consumer (a raw NATS subscriber in a thread) covers Go-shaped replies, and raw NATS
requests cover Go-shaped requests to our consumer.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest
from nats.aio.msg import Msg

from examples.grpc_hello import hello_pb2, hello_pb2_grpc
from narun.protocol import wire
from tests.support import (
    ROOT,
    Proc,
    Processes,
    free_port,
    start_gateway,
    unique_service,
    wait_for_port,
)
from tests.support.grpc_apps import SECRET, TRAILING_BIN

ROUTE_TIMEOUT = 5.0  # start_gateway's request_timeout_seconds
SLOW_ROUTE_TIMEOUT = 1.0
PROBES = ["narun.test.AsyncProbe", "narun.test.SyncProbe"]
# grpcio sends the deadline as a grpc-timeout rounded up (a 2 s deadline arrives as about
# 2.009 s), so the server side, and what it forwards, can exceed it by up to about 1%.
GRPC_TIMEOUT_ROUNDING = 1.011


# -- a fake Go narun consumer ---------------------------------------------------------

GO_REPLIES: dict[str, tuple[bytes, dict[str, str] | None]] = {
    "/go.Svc/Ok": (b"raw-protobuf-bytes", None),
    "/go.Svc/Invalid": (b"", {wire.SERVICE_ERROR: "bad name", wire.SERVICE_ERROR_CODE: "3"}),
    "/go.Svc/Unimplemented": (
        b"",
        {
            wire.SERVICE_ERROR: f"Method /go.Svc/X not implemented {SECRET}",
            wire.SERVICE_ERROR_CODE: "501",
        },
    ),
    "/go.Svc/Internal": (
        b"",
        {wire.SERVICE_ERROR: f"Internal server error {SECRET}", wire.SERVICE_ERROR_CODE: "500"},
    ),
    "/go.Svc/BadStatus": (b"x", {wire.GRPC_STATUS: "99"}),
    "/go.Svc/BadMetadata": (b"x", {wire.GRPC_STATUS: "0", wire.GRPC_TRAILING_METADATA: "%%"}),
}


class FakeGoConsumer:
    """A NATS subscriber in its own thread that answers as Go narun's nconsumer would.

    ``/go.Svc/Headers`` answers with the request's NATS headers as JSON.
    """

    def __init__(self, nats_url: str, service: str) -> None:
        self.nats_url = nats_url
        self.service = service
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self) -> FakeGoConsumer:
        self._thread.start()
        assert self._ready.wait(10), "fake Go consumer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(self.nats_url)

        async def answer(msg: Msg) -> None:
            method = (msg.headers or {}).get(wire.GRPC_METHOD, "")
            if method == "/go.Svc/Headers":
                data, headers = json.dumps(msg.headers).encode(), None
            else:
                data, headers = GO_REPLIES[method]
            await nc.publish(msg.reply, data, headers=headers)

        await nc.subscribe(self.service, queue="q", cb=answer)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()


# -- the stack ------------------------------------------------------------------------


@dataclass
class Stack:
    target: str
    service: str
    metrics_url: str
    gateway: Proc
    consumer: Proc
    channel: grpc.Channel


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    service = unique_service("grpc")
    go_service = unique_service("go")
    grpc_port, metrics_port = free_port(), free_port()
    routes: list[dict[str, Any]] = [
        {"grpc": "hello.v1.Greeter", "service": service},
        {"grpc": "narun.test.AsyncProbe", "service": service},
        {"grpc": "narun.test.SyncProbe", "service": service},
        {"grpc": "narun.test.SlowProbe", "service": service, "timeout": SLOW_ROUTE_TIMEOUT},
        {"grpc": "narun.test.Nobody", "service": unique_service("nobody")},
        {"grpc": "go.Svc", "service": go_service},
    ]
    with FakeGoConsumer(nats_url, go_service), Processes(logs, nats_url) as procs:
        consumer = procs.consumer(
            "tests.support.grpc_apps:register", service, "--interface", "grpc"
        )
        gateway, _ = procs.gateway(
            routes, grpc_addr=f"127.0.0.1:{grpc_port}", metrics_addr=f"127.0.0.1:{metrics_port}"
        )
        wait_for_port(grpc_port, gateway)
        target = f"127.0.0.1:{grpc_port}"
        with grpc.insecure_channel(target) as channel:
            yield Stack(
                target,
                service,
                f"http://127.0.0.1:{metrics_port}/metrics",
                gateway,
                consumer,
                channel,
            )
    assert SECRET in consumer.output()  # the detail went to the consumer's log...
    assert SECRET not in gateway.output()  # ...and nowhere else


def unary(stack: Stack, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return stack.channel.unary_unary(method, None, None)


def call_error(stack: Stack, method: str, request: bytes = b"", **kwargs: Any) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as info:
        unary(stack, method)(request, timeout=kwargs.pop("timeout", 10), **kwargs)
    error: grpc.Call = info.value  # type: ignore[assignment]
    return error


# -- the example ----------------------------------------------------------------------


def test_say_hello(stack: Stack) -> None:
    stub = hello_pb2_grpc.GreeterStub(stack.channel)
    reply = stub.SayHello(hello_pb2.SayHelloRequest(name="gRPC User"), timeout=10)
    assert reply.message == "Hello, gRPC User!"


def test_say_hello_with_empty_name_is_invalid_argument(stack: Stack) -> None:
    stub = hello_pb2_grpc.GreeterStub(stack.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.SayHello(hello_pb2.SayHelloRequest(name=""), timeout=10)
    error: grpc.Call = info.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Name cannot be empty"


def test_example_client_prints_the_seed_json(stack: Stack) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.grpc_hello.client",
            "--target",
            stack.target,
            "--name",
            "gRPC User",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout == '{"message": "Hello, gRPC User!"}\n'


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--many", "3", "--interval-ms", "300"],
            [f"Hello #{i}, gRPC User!" for i in (1, 2, 3)],
        ),
        (["--chat", "Ada", "Grace", "Linus"], ["Hello, Ada!", "Hello, Grace!", "Hello, Linus!"]),
    ],
    ids=["server-streaming", "bidi-chat"],
)
def test_example_client_streams(stack: Stack, args: list[str], expected: list[str]) -> None:
    command = [sys.executable, "-m", "examples.grpc_hello.client", "--target", stack.target]
    with subprocess.Popen([*command, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines = []
        arrived = []
        for line in proc.stdout:
            lines.append(json.loads(line)["message"])
            arrived.append(time.monotonic())
        assert proc.wait(30) == 0
    assert lines == expected
    if args[0] == "--many":  # printed as they came, not all at the end
        assert arrived[-1] - arrived[0] > 0.4


def test_example_chat_rejects_an_empty_name(stack: Stack) -> None:
    stub = hello_pb2_grpc.GreeterStub(stack.channel)
    replies: Any = stub.Chat(
        iter([hello_pb2.SayHelloRequest(name="a"), hello_pb2.SayHelloRequest()]), timeout=10
    )
    assert next(replies).message == "Hello, a!"
    with pytest.raises(grpc.RpcError):
        next(replies)
    assert replies.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_two_services_in_one_consumer(stack: Stack) -> None:
    stub = hello_pb2_grpc.GreeterStub(stack.channel)
    assert stub.SayHello(hello_pb2.SayHelloRequest(name="a"), timeout=10).message == "Hello, a!"
    assert unary(stack, "/narun.test.AsyncProbe/Echo")(b"b", timeout=10) == b"b"
    assert unary(stack, "/narun.test.SyncProbe/Echo")(b"c", timeout=10) == b"c"


# -- status both ways -----------------------------------------------------------------

ABORT_CODES = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "DATA_LOSS",
]


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("code", ABORT_CODES)
def test_abort_reaches_the_client_exactly(stack: Stack, probe: str, code: str) -> None:
    message = f"{code.lower()}: déjà vu, 100% (line\tone)"
    error = call_error(stack, f"/{probe}/Abort", f"{code}:{message}".encode())
    assert error.code() == grpc.StatusCode[code]
    assert error.details() == message


@pytest.mark.parametrize("probe", PROBES)
def test_set_code_without_abort(stack: Stack, probe: str) -> None:
    error = call_error(stack, f"/{probe}/SetCode", b"ALREADY_EXISTS:it is there")
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "it is there"


@pytest.mark.parametrize("probe", PROBES)
def test_servicer_exception_is_unknown_without_internals(stack: Stack, probe: str) -> None:
    error = call_error(stack, f"/{probe}/Crash")
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception calling application"
    everything = repr(error.trailing_metadata()) + repr(error.initial_metadata())
    assert SECRET not in everything
    assert "Traceback" not in everything


def test_unknown_method_of_a_routed_service_is_unimplemented(stack: Stack) -> None:
    error = call_error(stack, "/narun.test.AsyncProbe/NoSuchMethod")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "Method not found!"


def test_unrouted_service_is_unimplemented(stack: Stack) -> None:
    error = call_error(stack, "/narun.test.Unrouted/Echo")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "narun.test.Unrouted" in (error.details() or "")


def test_no_consumer_is_unavailable(stack: Stack) -> None:
    error = call_error(stack, "/narun.test.Nobody/Echo")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "No backend service available"


def test_request_over_max_payload_is_resource_exhausted(stack: Stack) -> None:
    error = call_error(stack, "/narun.test.AsyncProbe/Echo", b"x" * (1024 * 1024 + 1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "Request too large"


# -- streaming methods ----------------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES)
def test_server_streaming_messages_metadata_and_status(stack: Stack, probe: str) -> None:
    call = stack.channel.unary_stream(f"/{probe}/Ticks", None, None)
    responses = call(b"5", timeout=10)
    got = list(responses)
    assert [m.split(b":")[0] for m in got] == [b"0", b"1", b"2", b"3", b"4"]
    initial = dict(responses.initial_metadata())
    assert initial["kind"] == "ticks"
    assert re.fullmatch(r"[0-9a-f]{16}", str(initial["x-request-id"]))
    assert ("done", "yes") in responses.trailing_metadata()
    assert responses.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("probe", PROBES)
def test_server_streaming_messages_arrive_as_sent(stack: Stack, probe: str) -> None:
    # Three messages 0.4 s apart: each must arrive long before the next is produced.
    call = stack.channel.unary_stream(f"/{probe}/Ticks", None, None)
    delays = []
    for message in call(b"3,0.4", timeout=10):
        delays.append(time.time() - float(message.split(b":")[1]))
    assert len(delays) == 3
    assert max(delays) < 0.3, delays


@pytest.mark.parametrize("probe", PROBES)
def test_slow_client_slows_the_servicer(stack: Stack, probe: str) -> None:
    # 600 messages of 32 KiB (19 MiB): far more than the stream's 1 MiB window and the
    # HTTP/2 and socket buffers. While the client does not read, the servicer must wait:
    # the last message is made only after the client resumed reading.
    call = stack.channel.unary_stream(f"/{probe}/Ticks", None, None)
    stream: Any = call(b"600,0,32768", timeout=60)
    assert next(stream).startswith(b"0:")
    time.sleep(2)
    resumed = time.time()
    rest = list(stream)
    assert len(rest) == 599
    assert [int(m.split(b":")[0]) for m in rest] == list(range(1, 600))
    assert float(rest[-1].split(b":")[1]) > resumed


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("messages", [0, 1, 2, 5])
def test_client_streaming(stack: Stack, probe: str, messages: int) -> None:
    call = stack.channel.stream_unary(f"/{probe}/ClientStream", None, None)
    parts = [f"m{i};".encode() for i in range(messages)]
    assert call(iter(parts), timeout=10) == b"".join(parts)


@pytest.mark.parametrize("method", ["Echo", "Ticks"])
def test_no_request_message_for_a_unary_request_is_unimplemented(stack: Stack, method: str) -> None:
    # A client that sends no message to a method that takes one (unary request).
    call = stack.channel.stream_stream(f"/narun.test.AsyncProbe/{method}", None, None)
    stream: Any = call(iter([]), timeout=10)
    with pytest.raises(grpc.RpcError):
        next(stream)
    assert stream.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "exactly one request message" in (stream.details() or "")


@pytest.mark.parametrize("probe", PROBES)
def test_bidi_is_interactive(stack: Stack, probe: str) -> None:
    # Each answer comes back before the client sends its next message.
    call = stack.channel.stream_stream(f"/{probe}/Bidi", None, None)
    answers: queue.Queue[bytes] = queue.Queue()
    sent: list[bytes] = []

    def requests() -> Iterator[bytes]:
        for i in range(20):
            message = f"n{i}".encode()
            sent.append(message)
            yield message
            assert answers.get(timeout=5) == b"echo:" + message

    stream = call(requests(), timeout=20)
    for answer in stream:
        answers.put(answer)
    assert len(sent) == 20
    assert stream.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("probe", PROBES)
def test_bidi_servicer_abort_reaches_the_client(stack: Stack, probe: str) -> None:
    call = stack.channel.stream_stream(f"/{probe}/Bidi", None, None)
    stream: Any = call(iter([b"a", b"abort", b"never"]), timeout=10)
    assert next(stream) == b"echo:a"
    with pytest.raises(grpc.RpcError):
        next(stream)
    assert stream.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stream.details() == "told to"
    assert ("why", "asked") in (stream.trailing_metadata() or ())


@pytest.mark.parametrize("probe", PROBES)
def test_bidi_many_messages_in_order(stack: Stack, probe: str) -> None:
    call = stack.channel.stream_stream(f"/{probe}/Bidi", None, None)
    sent = [f"{i:06d}".encode() * 50 for i in range(3000)]
    got = list(call(iter(sent), timeout=60))
    assert got == [b"echo:" + m for m in sent]


@pytest.mark.parametrize("probe", PROBES)
def test_client_cancel_cancels_the_servicer(stack: Stack, probe: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    call = stack.channel.unary_stream(f"/{probe}/Forever", None, None)
    stream: Any = call(str(report).encode(), timeout=30)
    assert next(stream) == b"started"
    stream.cancel()
    deadline = time.monotonic() + 10
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert report.read_text() == "cancelled seen=True"


@pytest.mark.parametrize("probe", PROBES)
def test_deadline_crosses_the_hop(stack: Stack, probe: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    call = stack.channel.unary_stream(f"/{probe}/Forever", None, None)
    started = time.monotonic()
    stream: Any = call(str(report).encode(), timeout=1.5)
    assert next(stream) == b"started"
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    error: grpc.Call = info.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 10
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert report.read_text() == "cancelled seen=True"


# -- metadata -------------------------------------------------------------------------

REQUEST_METADATA = (
    ("k", "v1"),
    ("k", "v2"),
    ("spaces", " a b,c=d%e "),
    ("blob-bin", bytes(range(256))),
    ("blob-bin", b""),
    ("x-empty", ""),
)


@pytest.mark.parametrize("probe", PROBES)
def test_metadata_round_trip(stack: Stack, probe: str) -> None:
    response, call = unary(stack, f"/{probe}/Echo").with_call(
        b"hi", metadata=REQUEST_METADATA, timeout=10
    )
    assert response == b"hi"
    initial = [
        (k, v) for k, v in call.initial_metadata() if k in {"k", "spaces", "blob-bin", "x-empty"}
    ]
    assert initial == [(k, v) for k, v in REQUEST_METADATA]
    trailing = list(call.trailing_metadata())
    assert ("t-bin", TRAILING_BIN) in trailing
    assert [v for k, v in trailing if k == "rep"] == ["1", "2"]
    peer = dict(trailing)["peer"]
    assert isinstance(peer, str)
    assert peer.startswith("ipv4:127.0.0.1:")


def test_only_client_metadata_reaches_the_servicer(stack: Stack) -> None:
    # Echo sends back what the servicer saw, user-agent left out: no ":authority",
    # "grpc-*", "te" or "content-type" from the transport; only the call's request ID.
    _, call = unary(stack, "/narun.test.AsyncProbe/Echo").with_call(b"", timeout=10)
    assert [k for k, _ in call.initial_metadata()] == ["x-request-id"]


# -- deadlines ------------------------------------------------------------------------


def remaining_seen(stack: Stack, probe: str, timeout: float | None) -> float:
    _, call = unary(stack, f"/{probe}/Echo").with_call(b"", timeout=timeout)
    value = dict(call.trailing_metadata())["time-remaining"]
    assert isinstance(value, str)
    return float(value)


@pytest.mark.parametrize("probe", PROBES)
def test_servicer_sees_the_client_deadline(stack: Stack, probe: str) -> None:
    seen = remaining_seen(stack, probe, 2.0)
    assert 0 < seen <= 2.0 * GRPC_TIMEOUT_ROUNDING
    assert seen > 1.0  # the call itself takes milliseconds


def test_servicer_sees_the_route_timeout_without_client_deadline(stack: Stack) -> None:
    seen = remaining_seen(stack, "narun.test.AsyncProbe", None)
    assert ROUTE_TIMEOUT - 1 < seen <= ROUTE_TIMEOUT


@pytest.mark.parametrize("probe", PROBES)
def test_client_deadline_shorter_than_route_timeout(stack: Stack, probe: str) -> None:
    started = time.monotonic()
    error = call_error(stack, f"/{probe}/Sleep", b"3", timeout=0.5)
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < ROUTE_TIMEOUT / 2


def test_route_timeout_is_deadline_exceeded(stack: Stack) -> None:
    started = time.monotonic()
    error = call_error(stack, "/narun.test.SlowProbe/Sleep", b"3")
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "Request timed out waiting for backend service"
    assert SLOW_ROUTE_TIMEOUT <= elapsed < 3


# -- Go narun interop -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bidi-interactive", "client-stream"])
def test_streaming_call_to_a_go_consumer_is_unimplemented_at_once(stack: Stack, kind: str) -> None:
    # The fake Go consumer answers every call with one message; a streaming call must
    # not be taken as unary, nor hang.
    stop = threading.Event()

    def requests() -> Iterator[bytes]:
        yield b"first"
        if kind == "client-stream":
            yield b"second"
        stop.wait(30)  # an interactive client keeps its side open

    started = time.monotonic()
    try:
        if kind == "client-stream":
            unary_answer = stack.channel.stream_unary("/go.Svc/Ok", None, None)
            with pytest.raises(grpc.RpcError) as info:
                unary_answer(requests(), timeout=30)
        else:
            answers: Any = stack.channel.stream_stream("/go.Svc/Ok", None, None)
            with pytest.raises(grpc.RpcError) as info:
                list(answers(requests(), timeout=30))
    finally:
        stop.set()
    error: grpc.Call = info.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert time.monotonic() - started < 3


def test_go_consumer_success_is_raw_bytes(stack: Stack) -> None:
    assert unary(stack, "/go.Svc/Ok")(b"req", timeout=10) == b"raw-protobuf-bytes"


@pytest.mark.parametrize(
    ("method", "code", "details"),
    [
        ("/go.Svc/Invalid", grpc.StatusCode.INVALID_ARGUMENT, "bad name"),
        (
            "/go.Svc/Unimplemented",
            grpc.StatusCode.UNIMPLEMENTED,
            "Method not implemented by the backend service",
        ),
        ("/go.Svc/Internal", grpc.StatusCode.UNKNOWN, "Backend service error"),
        ("/go.Svc/BadStatus", grpc.StatusCode.INTERNAL, "Bad reply from backend service"),
        ("/go.Svc/BadMetadata", grpc.StatusCode.INTERNAL, "Bad reply from backend service"),
    ],
)
def test_go_consumer_errors(stack: Stack, method: str, code: grpc.StatusCode, details: str) -> None:
    error = call_error(stack, method)
    assert error.code() == code
    assert error.details() == details


def test_request_headers_seen_by_a_consumer(stack: Stack) -> None:
    raw = unary(stack, "/go.Svc/Headers")(b"", metadata=(("k", "v"), ("k-bin", b"\x00")), timeout=2)
    headers: dict[str, str] = json.loads(raw)
    assert headers[wire.GRPC_METHOD] == "/go.Svc/Headers"
    assert 1000 <= int(headers[wire.TIMEOUT_MS]) <= 2000 * GRPC_TIMEOUT_ROUNDING
    assert headers[wire.CLIENT_ADDR].startswith("127.0.0.1:")
    items = headers[wire.GRPC_METADATA].split(",")
    assert items[0].startswith("user-agent=grpc-python")
    # and the call's request ID, made by the gateway (also in its own header)
    rid = headers[wire.REQUEST_ID]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert items[1:] == ["k=v", "k-bin=AA", f"x-request-id={rid}"]


async def test_go_shaped_requests_to_our_consumer(stack: Stack, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        method = {wire.GRPC_METHOD: "/hello.v1.Greeter/SayHello"}
        request = hello_pb2.SayHelloRequest(name="Go").SerializeToString()
        reply = await nc.request(stack.service, request, timeout=5, headers=method)
        assert hello_pb2.SayHelloResponse.FromString(reply.data).message == "Hello, Go!"
        assert wire.SERVICE_ERROR not in (reply.headers or {})

        empty = hello_pb2.SayHelloRequest(name="").SerializeToString()
        reply = await nc.request(stack.service, empty, timeout=5, headers=method)
        assert reply.data == b""
        assert reply.headers is not None
        assert reply.headers[wire.SERVICE_ERROR_CODE] == "3"
        assert reply.headers[wire.SERVICE_ERROR]
        assert reply.headers[wire.GRPC_MESSAGE] == "Name%20cannot%20be%20empty"

        reply = await nc.request(stack.service, request, timeout=5)
        assert reply.headers is not None
        assert reply.headers[wire.SERVICE_ERROR_CODE] == "3"

        unknown = {wire.GRPC_METHOD: "/hello.v1.Greeter/Nope"}
        reply = await nc.request(stack.service, request, timeout=5, headers=unknown)
        assert reply.headers is not None
        assert reply.headers[wire.SERVICE_ERROR_CODE] == "12"

        info = await nc.request(f"$SRV.INFO.{stack.service}", b"", timeout=5)
        (endpoint,) = json.loads(info.data)["endpoints"]
        assert (endpoint["name"], endpoint["subject"], endpoint["queue_group"]) == (
            wire.GRPC_SERVICE_ENDPOINT,
            stack.service,
            wire.QUEUE_GROUP,
        )
    finally:
        await nc.close()


# -- shutdown -------------------------------------------------------------------------


def test_gateway_shutdown_lets_calls_in_flight_finish(
    stack: Stack, nats_url: str, logs: Path
) -> None:
    grpc_port = free_port()
    routes: list[dict[str, Any]] = [{"grpc": "narun.test.AsyncProbe", "service": stack.service}]
    gateway, _ = start_gateway(logs, nats_url, routes, grpc_addr=f"127.0.0.1:{grpc_port}")
    try:
        wait_for_port(grpc_port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            sleep = channel.unary_unary("/narun.test.AsyncProbe/Sleep", None, None)
            future = sleep.future(b"1", timeout=10)
            time.sleep(0.3)
            gateway.signal(signal.SIGTERM)
            assert future.result() == b"slept"
    finally:
        assert gateway.stop() == 0, gateway.output()


# -- metrics --------------------------------------------------------------------------


def test_metrics(stack: Stack) -> None:
    unary(stack, "/narun.test.AsyncProbe/Echo")(b"", timeout=10)
    call_error(stack, "/narun.test.Nobody/Echo")
    call_error(stack, "/narun.test.Unrouted/Echo")
    text = httpx.get(stack.metrics_url, timeout=5).text
    lines = set(text.splitlines())

    def counted(name: str, labels: str) -> bool:
        return any(line.startswith(f"{name}{{{labels}}} ") for line in lines)

    assert counted(
        "grpc_gateway_requests_total", 'grpc_code="OK",grpc_method="/narun.test.AsyncProbe/Echo"'
    )
    assert counted(
        "grpc_gateway_requests_total",
        'grpc_code="UNAVAILABLE",grpc_method="/narun.test.Nobody/Echo"',
    )
    assert counted(
        "grpc_gateway_requests_total", 'grpc_code="UNIMPLEMENTED",grpc_method="<unmatched>"'
    )
    assert counted("gateway_nats_requests_total", f'status="success",subject="{stack.service}"')
    assert any(line.startswith("grpc_gateway_request_duration_seconds_count{") for line in lines)
